package driver

import "time"

// Local is the L1 store a cache reads first: an in-process map of typed
// values (an L1 hit never decodes bytes) with per-entry TTL and the
// generation guard of the consistency protocol. Package local provides the
// default implementation on ristretto.
//
// Implementations must be safe for concurrent use. Get is on the hot path: it
// must not allocate and should not take locks beyond those of the underlying
// map.
type Local[V any] interface {
	// Get returns the entry for key. ok is false on a miss. absent reports a
	// cached "not found" (negative) entry; value is then the zero V.
	Get(key string) (value V, absent bool, ok bool)
	// Generation returns a snapshot of key's generation. Every Invalidate of
	// key and every Flush changes it.
	Generation(key string) uint64
	// Fill stores the entry for ttl only if key's generation still equals
	// gen, and reports whether it was stored. An Invalidate or Flush racing
	// with Fill always wins: the entry is either not stored or removed.
	// Fill returns once a Get of key sees the entry (or its refusal).
	Fill(key string, value V, absent bool, ttl time.Duration, gen uint64) bool
	// Invalidate changes the generation of keys, then removes them. With
	// one key and nothing else changing it concurrently, Invalidate adds
	// exactly one to the key's generation: a Set tells its own invalidation
	// from another's by it (an implementation that does otherwise stays
	// correct but loses the L1 fill after a Set).
	Invalidate(keys ...string)
	// Flush changes every generation, then removes every entry.
	Flush()
	// Close releases the store. Later calls behave as on an empty store.
	Close()
}

// StaleLocal is the optional interface of a Local that keeps entries past
// their TTL for a while (package local does with local.WithKeepStale), for
// tiered.WithStaleIfError. GetStale returns key's entry even when its TTL
// has passed, with the end of that TTL; ok is false when there is no
// entry. It is called only when L2 and the loader have both failed, never
// on the hit path. A Local must not return expired entries from Get.
//
// Without it, the cache refuses WithStaleIfError at New.
type StaleLocal[V any] interface {
	GetStale(key string) (value V, absent bool, expiredAt time.Time, ok bool)
}

// BatchFiller is the optional batch fill of a Local (package local's does
// one wait for ristretto's buffers per batch instead of one per key). It
// stores entry i = at(i) as Fill would, for i < n, and returns how many it
// stored.
//
// Without it, the cache calls Fill once per key.
type BatchFiller[V any] interface {
	FillMany(n int, at func(i int) (key string, value V, absent bool, ttl time.Duration, gen uint64)) int
}

// WrittenFiller is the optional fill of a Local for a value this node has
// just written to L2: it stores the entry as Fill does without waiting
// for the store to apply it (a read in that moment misses L1 and reads the
// same value from L2). Package local implements it.
//
// Without it, the cache fills with Fill. An L1-only cache always uses
// Fill, which waits, so that its writer reads its own write from L1.
type WrittenFiller[V any] interface {
	FillWritten(key string, value V, absent bool, ttl time.Duration, gen uint64) bool
}

// Sizer is the optional size report of a Local, read by the cache's
// metrics at collection time (package local implements it): entries held,
// their total cost, and the sets dropped (contention) and rejected (the
// admission policy) since the start.
//
// Without it, the cache reports no L1 size metrics.
type Sizer interface {
	Metrics() (entries, cost, dropped, rejected uint64)
}
