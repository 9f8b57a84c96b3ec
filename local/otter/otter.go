package otter

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	motter "github.com/maypok86/otter/v2"
)

// item is what the store keeps under a key. otter holds a pointer to it (one
// shared instantiation of otter's generic code for every V); ttl is read by
// the expiry calculator when the entry is written.
type item[V any] struct {
	value  V
	absent bool
	ttl    time.Duration
}

// Store is an L1 store on otter v2. Create it with New.
type Store[V any] struct {
	cache   *motter.Cache[string, *item[V]]
	seed    maphash.Seed
	stripes [Stripes]atomic.Uint64
	epoch   atomic.Uint64
	closed  atomic.Bool
	// mu orders Close after every write in progress: writes hold it for
	// reading. Get does not take it.
	mu sync.RWMutex

	byEntries bool
	evicted   atomic.Uint64
}

// New returns a Store configured by opts. Without options it holds at most
// DefaultMaxEntries entries. A bad option is an error wrapping
// ErrInvalidOption.
func New[V any](opts ...Option) (*Store[V], error) {
	cfg, userCost, err := build[V](opts)
	if err != nil {
		return nil, err
	}
	s := &Store[V]{seed: maphash.MakeSeed(), byEntries: cfg.maxCost == 0}
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
	if cfg.maxCost > 0 {
		o.MaximumWeight = uint64(cfg.maxCost)
		o.Weigher = func(_ string, it *item[V]) uint32 {
			if it.absent {
				return 1
			}
			return uint32(min(max(userCost(it.value), 1), 1<<32-1))
		}
	} else {
		o.MaximumSize = int(cfg.maxEntries)
	}
	c, err := motter.New(o)
	if err != nil {
		return nil, invalid("%v", err)
	}
	s.cache = c
	return s, nil
}

// Get returns the entry for key. ok is false on a miss; absent reports a
// cached "not found". It does not allocate.
func (s *Store[V]) Get(key string) (value V, absent bool, ok bool) {
	if s == nil || s.closed.Load() {
		return value, false, false
	}
	it, ok := s.cache.GetIfPresent(key)
	if !ok {
		return value, false, false
	}
	return it.value, it.absent, true
}

func (s *Store[V]) stripe(key string) *atomic.Uint64 {
	return &s.stripes[maphash.String(s.seed, key)%Stripes]
}

// Generation returns key's generation: it changes with every Invalidate of
// key (or of a key sharing its stripe) and every Flush.
func (s *Store[V]) Generation(key string) uint64 {
	if s == nil {
		return 0
	}
	return s.stripe(key).Load() + s.epoch.Load()
}

// lock takes the store for a write; it reports false when the store is nil
// or closed (then there is nothing to unlock).
func (s *Store[V]) lock() bool {
	if s == nil {
		return false
	}
	s.mu.RLock()
	if s.closed.Load() {
		s.mu.RUnlock()
		return false
	}
	return true
}

// Fill stores the entry for ttl if key's generation still equals gen and
// reports whether it did. A ttl <= 0 stores nothing. The next Get sees the
// entry (otter writes its table synchronously; the size bound is enforced
// shortly after, by otter's maintenance).
func (s *Store[V]) Fill(key string, value V, absent bool, ttl time.Duration, gen uint64) bool {
	if ttl <= 0 || !s.lock() {
		return false
	}
	defer s.mu.RUnlock()
	if s.Generation(key) != gen {
		return false
	}
	s.cache.Set(key, &item[V]{value: value, absent: absent, ttl: ttl})
	// An Invalidate may have run between the check above and the set. It
	// changed the generation before deleting, so checking again finds it;
	// remove what we stored (at worst a newer entry, which is only a miss).
	if s.Generation(key) != gen {
		s.cache.Invalidate(key)
		return false
	}
	return true
}

// Invalidate changes the generation of keys, then removes them.
func (s *Store[V]) Invalidate(keys ...string) {
	if !s.lock() {
		return
	}
	defer s.mu.RUnlock()
	for _, k := range keys {
		s.stripe(k).Add(1)
		s.cache.Invalidate(k)
	}
}

// Flush changes every generation, then removes every entry.
func (s *Store[V]) Flush() {
	if !s.lock() {
		return
	}
	defer s.mu.RUnlock()
	s.epoch.Add(1)
	s.cache.InvalidateAll()
}

// Close stops otter's goroutines and drops the entries. Later calls behave
// as on an empty store. Close is idempotent.
func (s *Store[V]) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	s.epoch.Add(1)
	s.cache.InvalidateAll()
	s.cache.StopAllGoroutines()
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
	if !s.lock() {
		return Stats{}
	}
	defer s.mu.RUnlock()
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
