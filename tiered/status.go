package tiered

import "github.com/tiercache/tiercache/tiered/driver"

// Status is a snapshot of a cache's live state beside its counters: what a
// status page (package debugpage) shows. Take it with Cache.Status.
type Status struct {
	// Name is the cache's name.
	Name string
	// Closed reports that Close was called; the other fields then describe
	// the cache as it was left.
	Closed bool
	// Stats are the cache's counters (see Stats).
	Stats Stats
	// L1 describes the local store; L1.Present is false for an L2-only
	// cache.
	L1 L1Status
	// Flights counts the keys this node is fetching past L1 right now (one
	// per key, however many callers share it): L2 reads, lease waits and
	// loads.
	Flights int
	// LoadsInFlight counts loader calls running right now (a batch call
	// counts once).
	LoadsInFlight int64
	// Refreshing counts early refreshes running right now.
	Refreshing int
	// Breakers has one entry per L2 shard the circuit breaker tracks; it is
	// empty when the breaker is off (WithCircuitBreaker(0, ...)) or the
	// cache has no L2.
	Breakers []BreakerStatus
}

// L1Status describes a cache's local store.
type L1Status struct {
	// Present is false for a cache without L1.
	Present bool
	// Sized is true when the store reports its size (package local's store
	// does); Entries and Cost are zero otherwise.
	Sized bool
	// Entries held; zero when the store only knows its cost (package local
	// bounded by MaxCost).
	Entries uint64
	// Cost held, in the unit of the store's cost function (entries for a
	// store bounded by entry count).
	Cost uint64
	// Dropped and Rejected count fills the store lost (buffers full) or
	// refused (admission policy).
	Dropped, Rejected uint64
}

// Breaker states of BreakerStatus.State.
const (
	BreakerClosed   = "closed"    // calls go through
	BreakerOpen     = "open"      // calls are refused until the cool-down ends
	BreakerHalfOpen = "half-open" // the cool-down ended: the next call probes L2
)

// BreakerStatus is the state of the circuit breaker of one L2 shard.
type BreakerStatus struct {
	// Shard is the address of the primary serving the shard's keys; "" for
	// a single shard (standalone, Sentinel) or a store that does not say.
	Shard string
	// State is BreakerClosed, BreakerOpen or BreakerHalfOpen.
	State string
	// Openings counts the times the breaker opened.
	Openings uint64
	// Rejected counts L2 calls refused while it was open.
	Rejected uint64
}

// Status returns a snapshot of the cache's live state. It is safe to call
// at any time, also after Close; it takes the cache's lock briefly and
// never blocks on I/O.
func (c *Cache[V]) Status() Status {
	st := Status{Name: c.name, Closed: c.closed.Load(), Stats: c.Stats()}
	st.LoadsInFlight = c.stats.loadsRunning.Load()
	c.mu.Lock()
	st.Flights, st.Refreshing = len(c.flights), len(c.refreshing)
	c.mu.Unlock()
	if c.l1 != nil {
		st.L1.Present = true
		if lm, ok := c.l1.(driver.Sizer); ok && !st.Closed {
			st.L1.Sized = true
			st.L1.Entries, st.L1.Cost, st.L1.Dropped, st.L1.Rejected = lm.Metrics()
		}
	}
	st.Breakers = c.breakerStatus()
	return st
}

// breakerStatus reports the state of the breaker of every L2 shard the
// cache has used (one entry, shard "", on a single-shard L2).
func (c *Cache[V]) breakerStatus() []BreakerStatus {
	bs := c.breakers
	if bs == nil {
		return nil
	}
	var out []BreakerStatus
	now := bs.now().UnixNano()
	bs.each(func(b *breaker) {
		state := BreakerClosed
		if until := b.openUntil.Load(); until != 0 {
			state = BreakerOpen
			if now >= until {
				state = BreakerHalfOpen
			}
		}
		out = append(out, BreakerStatus{Shard: b.shard, State: state, Openings: b.opened.Load(), Rejected: b.rejected.Load()})
	})
	return out
}
