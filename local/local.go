package local

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/tiercache/tiercache/internal/l1core"
)

// item is what the store keeps under a key. ristretto holds a pointer to it:
// a pointer-shaped value lets Go share one fast instantiation of ristretto's
// generic code, where a struct of a type parameter would go through a
// dictionary and typed memory moves (about 40 % slower per Get).
type item[V any] struct {
	value  V
	absent bool
	// expires is the end of the entry's TTL in Unix nanoseconds when the
	// store keeps stale entries (WithKeepStale); 0 otherwise (ristretto's
	// own TTL ends the entry).
	expires int64
	// epoch is the guard's flush epoch when the entry was filled: after a
	// Flush, Get misses it even before ristretto has cleared it.
	epoch uint64
}

// Store is an L1 store on ristretto. Create it with New.
type Store[V any] struct {
	cache *ristretto.Cache[string, *item[V]]
	guard l1core.Guard
	cfg   l1core.Config

	// Counters, read with Stats. ristretto's own metrics stay off: they
	// put an atomic add on every Get, on a stripe chosen by the key, which
	// makes parallel hits on one hot key contend.
	byEntries bool // bounded by MaxEntries: each entry costs 1
	dropped   atomic.Uint64
	rejected  atomic.Uint64
	evicted   atomic.Uint64
}

// table is the Store's map as the guard sees it.
type table[V any] struct {
	c *ristretto.Cache[string, *item[V]]
}

func (t table[V]) Delete(key string) { t.c.Del(key) }
func (t table[V]) Clear()            { t.c.Clear() }

// New returns a Store configured by opts. Without options it holds at most
// DefaultMaxEntries entries, each costing 1. A bad option is an error
// wrapping ErrInvalidOption.
func New[V any](opts ...Option) (*Store[V], error) {
	cfg, userCost, err := build[V](opts)
	if err != nil {
		return nil, err
	}
	maxCost, counters := cfg.MaxEntries, cfg.MaxEntries*countersPerEntry
	cost := func(*item[V]) int64 { return 1 }
	if cfg.MaxCost > 0 {
		// The counters are sized by the entries expected, not by the cost
		// bound: a byte bound of 1 GiB must not cost hundreds of MB of
		// counters (it did when we assumed 64-byte entries).
		maxCost, counters = cfg.MaxCost, cfg.ExpectedEntries*countersPerEntry
		cost = func(it *item[V]) int64 {
			if it.absent {
				return 1
			}
			return max(userCost(it.value), 1)
		}
	}
	s := &Store[V]{cfg: cfg, byEntries: cfg.MaxCost == 0}
	s.guard.Init()
	c, err := ristretto.NewCache(&ristretto.Config[string, *item[V]]{
		NumCounters:        counters,
		MaxCost:            maxCost,
		BufferItems:        cfg.BufferItems,
		Cost:               cost,
		IgnoreInternalCost: true,
		OnReject:           func(*ristretto.Item[*item[V]]) { s.rejected.Add(1) },
		OnEvict:            func(*ristretto.Item[*item[V]]) { s.evicted.Add(1) },
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	s.cache = c
	return s, nil
}

// Get returns the entry for key. ok is false on a miss; absent reports a
// cached "not found". It does not allocate.
func (s *Store[V]) Get(key string) (value V, absent bool, ok bool) {
	if s == nil || s.guard.Closed() {
		return value, false, false
	}
	it, ok := s.cache.Get(key)
	if !ok || it.epoch != s.guard.Epoch() || (it.expires != 0 && time.Now().UnixNano() >= it.expires) {
		return value, false, false
	}
	return it.value, it.absent, true
}

// GetStale returns the entry for key even if its TTL has passed, as long as
// the store still keeps it (WithKeepStale), with the end of its TTL. ok is
// false when there is no entry or the store keeps no stale entries.
func (s *Store[V]) GetStale(key string) (value V, absent bool, expiredAt time.Time, ok bool) {
	if s == nil || s.guard.Closed() || s.cfg.StaleFor == 0 {
		return value, false, expiredAt, false
	}
	it, ok := s.cache.Get(key)
	if !ok || it.epoch != s.guard.Epoch() {
		return value, false, expiredAt, false
	}
	return it.value, it.absent, time.Unix(0, it.expires), true
}

// Generation returns key's generation: it changes with every Invalidate of
// key (or of a key sharing its stripe) and every Flush.
func (s *Store[V]) Generation(key string) uint64 {
	if s == nil {
		return 0
	}
	return s.guard.Generation(key)
}

// set hands one entry to ristretto (without waiting) and counts a drop.
func (s *Store[V]) set(key string, value V, absent bool, ttl time.Duration, epoch uint64) bool {
	it := &item[V]{value: value, absent: absent, epoch: epoch}
	ttl, it.expires = s.cfg.Expiry(time.Now(), ttl)
	if !s.cache.SetWithTTL(key, it, 0, ttl) {
		s.dropped.Add(1)
		return false
	}
	return true
}

// Fill stores the entry for ttl if key's generation still equals gen and
// reports whether it did. A ttl <= 0 stores nothing. Fill returns once
// ristretto has applied the entry, so the next Get sees it (unless the
// admission policy rejected it: ristretto may reject or drop entries under
// pressure; both are counted in Stats).
func (s *Store[V]) Fill(key string, value V, absent bool, ttl time.Duration, gen uint64) bool {
	if s == nil || ttl <= 0 {
		return false
	}
	return s.guard.Fill(table[V]{s.cache}, key, gen,
		func(epoch uint64) bool { return s.set(key, value, absent, ttl, epoch) }, s.cache.Wait)
}

// FillWritten is Fill for a value this node has just written to L2 (tiered
// calls it after a Set when the cache has an L2): it does not wait for
// ristretto to apply the entry, which costs a hand-off to ristretto's
// goroutine and back. A Get in the moment before ristretto applies it
// misses and reads L2, which holds the same value. It reports whether the
// entry was handed to ristretto and its generation had not changed.
//
// The generation guard holds without the wait: ristretto applies sets and
// deletes of a key in the order they were handed to it, so an Invalidate
// that changed the generation after the guard's first check deletes after
// our set, and one that ran before it is seen by the second check, whose
// delete also follows our set.
func (s *Store[V]) FillWritten(key string, value V, absent bool, ttl time.Duration, gen uint64) bool {
	if s == nil || ttl <= 0 {
		return false
	}
	return s.guard.Fill(table[V]{s.cache}, key, gen,
		func(epoch uint64) bool { return s.set(key, value, absent, ttl, epoch) }, nil)
}

// Invalidate changes the generation of keys, then removes them.
func (s *Store[V]) Invalidate(keys ...string) {
	if s != nil {
		s.guard.Invalidate(table[V]{s.cache}, keys...)
	}
}

// Flush changes every generation, then removes every entry.
func (s *Store[V]) Flush() {
	if s != nil {
		s.guard.Flush(table[V]{s.cache})
	}
}

// Wait blocks until every write handed to ristretto so far is applied.
func (s *Store[V]) Wait() {
	if s == nil || !s.guard.Lock() {
		return
	}
	defer s.guard.Unlock()
	s.cache.Wait()
}

// Close stops the store's goroutines and drops its entries. Later calls
// behave as on an empty store. Close is idempotent.
func (s *Store[V]) Close() {
	if s != nil {
		s.guard.Close(s.cache.Close)
	}
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	// Entries held; only known for a store bounded by entries (zero when
	// bounded by WithMaxCost).
	Entries uint64
	// Cost held, in the unit of the WithCost function (entries when
	// bounded by entries).
	Cost     uint64
	Dropped  uint64 // fills dropped because ristretto's buffers were full
	Rejected uint64 // fills refused by the admission policy
	Evicted  uint64 // entries evicted to make room
}

// Stats returns the store's counters. It is safe to call at any time.
func (s *Store[V]) Stats() Stats {
	if s == nil || !s.guard.Lock() {
		return Stats{}
	}
	defer s.guard.Unlock()
	used := uint64(max(s.cache.MaxCost()-s.cache.RemainingCost(), 0))
	st := Stats{
		Cost:     used,
		Dropped:  s.dropped.Load(),
		Rejected: s.rejected.Load(),
		Evicted:  s.evicted.Load(),
	}
	if s.byEntries {
		st.Entries = used
	}
	return st
}

// Metrics reports the store's size and lost fills; tiered exports them as
// OpenTelemetry metrics.
func (s *Store[V]) Metrics() (entries, cost, dropped, rejected uint64) {
	st := s.Stats()
	return st.Entries, st.Cost, st.Dropped, st.Rejected
}

// The contract the store implements (package tiered/driver).
var (
	_ driver.Local[int]         = (*Store[int])(nil)
	_ driver.StaleLocal[int]    = (*Store[int])(nil)
	_ driver.BatchFiller[int]   = (*Store[int])(nil)
	_ driver.WrittenFiller[int] = (*Store[int])(nil)
	_ driver.Sizer              = (*Store[int])(nil)
)
