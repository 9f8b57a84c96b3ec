package tiered

import (
	"context"
	"time"
)

// Local is the L1 store a Cache reads first: an in-process map of typed
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
// WithStaleIfError. GetStale returns key's entry even when its TTL has
// passed, with the end of that TTL; ok is false when there is no entry. It
// is called only when L2 and the loader have both failed, never on the hit
// path. A Local must not return expired entries from Get.
type StaleLocal[V any] interface {
	GetStale(key string) (value V, absent bool, expiredAt time.Time, ok bool)
}

// Kinds of RemoteEntry. The values are part of the contract with L2 adapters,
// which declare the same constants.
const (
	KindNone     uint8 = 0 // no entry under the key
	KindValue    uint8 = 1 // a value: Payload holds the encoded V
	KindNotFound uint8 = 2 // a cached "not found"
	KindLease    uint8 = 3 // a load lease: another loader holds the key
	KindFailed   uint8 = 4 // the load under a lease failed; Payload is the message
	// KindUnstorable replaces a lease whose value L2 can never store (too
	// large): other nodes load for themselves while it lasts. Payload is
	// the error message.
	KindUnstorable uint8 = 6
)

// RemoteEntry is what an L2 store holds under a key. It is an alias of an
// unnamed struct type so that an L2 adapter can declare the identical type
// without importing tiered; dependency arrows point into tiered only.
type RemoteEntry = struct {
	// Kind is one of KindNone, KindValue, KindNotFound, KindLease, KindFailed.
	Kind uint8
	// Payload is the value encoded with the store's codec (KindValue), or
	// the error message of a failed load (KindFailed).
	Payload []byte
	// ExpiresAt is the absolute expiry of the entry.
	ExpiresAt time.Time
	// LoadTime is how long the load that produced the entry took.
	LoadTime time.Duration
	// Version identifies the write; random per write. For a lease it is the
	// lease token, and a failed load keeps the token of its lease.
	Version uint64
	// Deadline, when set, fences an unconditional write (Set, SetMany,
	// SetAndPublish): the store must not apply it once the server's own
	// clock is past Deadline, so that a write delayed in the network
	// cannot land after a later write or delete of the key (see
	// WithClockSkew). It is not stored.
	Deadline time.Time
}

// Remote is the L2 store shared by every node: package remote provides it on
// go-redis (standalone, Sentinel and Cluster). Keys passed to it are already
// namespaced by the cache. Implementations must be safe for concurrent use.
type Remote interface {
	// Get returns the entry under key; Kind is KindNone on a miss. A corrupt
	// or foreign value under the key is a miss (the adapter deletes it and
	// counts it).
	Get(ctx context.Context, key string) (RemoteEntry, error)
	// GetMany returns one entry per key, in order, with KindNone for misses.
	GetMany(ctx context.Context, keys []string) ([]RemoteEntry, error)
	// Set writes e under key until e.ExpiresAt, replacing whatever is there
	// (including a lease).
	Set(ctx context.Context, key string, e RemoteEntry) error
	// Delete removes keys (and with them any lease in flight).
	Delete(ctx context.Context, keys ...string) error
	// Acquire tries to take the load lease on key: it writes a lease entry
	// with token until expiresAt only if the key is empty. won reports whether
	// the lease was taken; when it was not, current is what the key holds.
	Acquire(ctx context.Context, key string, token uint64, expiresAt time.Time) (current RemoteEntry, won bool, err error)
	// CompareAndSwap replaces the entry under key by e only if the key holds
	// an entry whose Version is version, and reports whether it did. With a
	// lease token it is the conditional fill of a load.
	CompareAndSwap(ctx context.Context, key string, version uint64, e RemoteEntry) (bool, error)
	// CompareAndDelete deletes key only if it holds an entry whose Version is
	// version, and reports whether it did.
	CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error)
	// Marshal encodes a value with the store's codec.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data produced by Marshal into v (a pointer).
	Unmarshal(data []byte, v any) error
}

// Bus carries invalidations between the nodes of a cluster; package
// invalidation provides it on Redis pub/sub. One bus is shared by every cache
// of a process, each under its own namespace.
type Bus interface {
	// Publish tells every other node to drop keys of namespace from its L1.
	// It returns once Redis accepted the message.
	Publish(ctx context.Context, namespace string, keys []string) error
	// Subscribe registers the L1 of a cache under namespace: invalidate is
	// called with keys other nodes changed, flush when messages may have been
	// lost. unsubscribe stops the calls; it is safe to call more than once.
	Subscribe(namespace string, invalidate func(keys []string), flush func()) (unsubscribe func(), err error)
}

// PublishingBus is an optional extension of Bus, for local delivery: a bus
// that also delivers a publish to the other caches of the same namespace on
// the same bus (two caches of one name in one process invalidate each
// other) needs to know which registration publishes, so that a cache does
// not drop the copy it just wrote. Package invalidation implements it.
type PublishingBus interface {
	// SubscribePublisher is Subscribe that also returns a publish function
	// bound to the registration: Publish of namespace, delivered to every
	// subscriber of namespace but this registration.
	SubscribePublisher(namespace string, invalidate func(keys []string), flush func()) (publish func(ctx context.Context, keys []string) error, unsubscribe func(), err error)
}

// LeaseWaker is an optional extension of Bus: it wakes the callers waiting
// on a load lease when the holder resolves it, so that they need not find
// out by polling L2. Package invalidation implements it. The cache still
// polls L2 with backoff while it waits (WithLeasePoll): a wake is a hint
// that the lease may have been resolved, never the only way to learn it, so
// a lost notice costs latency, not correctness.
//
// The cache takes its lease tokens from LeaseToken, calls HoldLease when
// it has taken a lease on a key and LeaseResolved once it has replaced the
// lease in L2 by the value, a marker or nothing. A caller that finds
// another's lease calls AwaitLease with the lease's token, and done when it
// stops waiting. Keys are the cache's keys (without the L2 prefix),
// namespace is the cache's name. All methods are safe for concurrent use
// and quick: they never wait on the network.
type LeaseWaker interface {
	// LeaseToken returns a fresh, random, non-zero lease token that tells
	// the waiters on the lease how to reach this process.
	LeaseToken() uint64
	// HoldLease records that this process holds the lease on key of
	// namespace, so that waiters on other nodes that announce themselves
	// get a notice when it is resolved. It sends nothing.
	HoldLease(namespace, key string)
	// LeaseResolved ends a HoldLease: it wakes the waiters of this process
	// on key at once and sends a notice to the nodes whose waiters
	// announced themselves while the lease was held (or shortly after).
	LeaseResolved(namespace, key string)
	// AwaitLease registers a waiter on the lease with token on key of
	// namespace, held by another node or another cache of this process,
	// and announces it to the holder (unless this process holds a lease on
	// key itself). wake receives a value when a lease on key may have been
	// resolved since the call. done unregisters the waiter; it is safe to
	// call more than once.
	AwaitLease(namespace, key string, token uint64) (wake <-chan struct{}, done func())
}
