package otter

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	motter "github.com/maypok86/otter/v2"

	"github.com/tiercache/tiercache/internal/l1core"
)

// item is what the store keeps under a key. otter holds a pointer to it (one
// shared instantiation of otter's generic code for every V); ttl is read by
// the expiry calculator when the entry is written; expires is the end of
// the entry's TTL in Unix nanoseconds when the store keeps stale entries
// (WithKeepStale), 0 otherwise.
type item[V any] struct {
	value   V
	absent  bool
	ttl     time.Duration
	expires int64
	// epoch is the guard's flush epoch when the entry was filled: after a
	// Flush, Get misses it even before otter has cleared it.
	epoch uint64
}

// Store is an L1 store on otter v2. Create it with New.
type Store[V any] struct {
	cache *motter.Cache[string, *item[V]]
	guard l1core.Guard
	cfg   l1core.Config

	byEntries bool
	evicted   atomic.Uint64
}

// table is the Store's map as the guard sees it.
type table[V any] struct {
	c *motter.Cache[string, *item[V]]
}

func (t table[V]) Delete(key string) { t.c.Invalidate(key) }
func (t table[V]) Clear()            { t.c.InvalidateAll() }

// New returns a Store configured by opts. Without options it holds at most
// DefaultMaxEntries entries. A bad option is an error wrapping
// ErrInvalidOption.
func New[V any](opts ...Option) (*Store[V], error) {
	cfg, userCost, err := build[V](opts)
	if err != nil {
		return nil, err
	}
	s := &Store[V]{cfg: cfg, byEntries: cfg.MaxCost == 0}
	s.guard.Init()
	o := &motter.Options[string, *item[V]]{
		ExpiryCalculator: motter.ExpiryWritingFunc(func(e motter.Entry[string, *item[V]]) time.Duration {
			return e.Value.ttl
		}),
		OnAtomicDeletion: func(e motter.DeletionEvent[string, *item[V]]) {
			if e.Cause == motter.CauseOverflow {
				s.evicted.Add(1)
			}
		},
	}
	if cfg.MaxCost > 0 {
		o.MaximumWeight = uint64(cfg.MaxCost)
		o.Weigher = func(_ string, it *item[V]) uint32 {
			if it.absent {
				return 1
			}
			return uint32(min(max(userCost(it.value), 1), 1<<32-1))
		}
	} else {
		o.MaximumSize = int(cfg.MaxEntries)
	}
	c, err := motter.New(o)
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
	it, ok := s.cache.GetIfPresent(key)
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
	it, ok := s.cache.GetIfPresent(key)
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

// Fill stores the entry for ttl if key's generation still equals gen and
// reports whether it did. A ttl <= 0 stores nothing. The next Get sees the
// entry (otter writes its table synchronously; the size bound is enforced
// shortly after, by otter's maintenance).
func (s *Store[V]) Fill(key string, value V, absent bool, ttl time.Duration, gen uint64) bool {
	if s == nil || ttl <= 0 {
		return false
	}
	return s.guard.Fill(table[V]{s.cache}, key, gen, func(epoch uint64) bool {
		it := &item[V]{value: value, absent: absent, epoch: epoch}
		it.ttl, it.expires = s.cfg.Expiry(time.Now(), ttl)
		s.cache.Set(key, it)
		return true
	}, nil)
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

// Close stops otter's goroutines and drops the entries. Later calls behave
// as on an empty store. Close is idempotent.
func (s *Store[V]) Close() {
	if s == nil {
		return
	}
	s.guard.Close(func() {
		s.cache.InvalidateAll()
		s.cache.StopAllGoroutines()
	})
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	// Entries held (otter's estimate; expired entries not yet cleaned up
	// count until they are).
	Entries uint64
	// Cost held, in the unit of WithCost (entries when bounded by
	// WithMaxEntries).
	Cost    uint64
	Evicted uint64 // entries evicted to make room
}

// Stats returns the store's counters. It is safe to call at any time.
func (s *Store[V]) Stats() Stats {
	if s == nil || !s.guard.Lock() {
		return Stats{}
	}
	defer s.guard.Unlock()
	st := Stats{Entries: uint64(max(s.cache.EstimatedSize(), 0)), Evicted: s.evicted.Load()}
	if s.byEntries {
		st.Cost = st.Entries
	} else {
		st.Cost = s.cache.WeightedSize()
	}
	return st
}

// Metrics reports the store's size; tiered exports it as OpenTelemetry
// metrics. otter neither drops nor refuses writes, so those counts are 0.
func (s *Store[V]) Metrics() (entries, cost, dropped, rejected uint64) {
	st := s.Stats()
	return st.Entries, st.Cost, 0, 0
}

// The contract the store implements (package tiered/driver).
var (
	_ driver.Local[int]       = (*Store[int])(nil)
	_ driver.StaleLocal[int]  = (*Store[int])(nil)
	_ driver.BatchFiller[int] = (*Store[int])(nil)
	_ driver.Sizer            = (*Store[int])(nil)
)
