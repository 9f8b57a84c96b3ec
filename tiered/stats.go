package tiered

import (
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/stripe"
)

// counters are the cache's own atomics. Hot-path ones are striped.
type counters struct {
	l1Hit, l1NotFound stripe.Counter
	l1Miss            atomic.Uint64

	l2Hit, l2NotFound, l2Miss, l2Error atomic.Uint64
	l2Corrupt                          atomic.Uint64

	loads, loadNotFound, loadErrors atomic.Uint64
	loadNanos                       atomic.Uint64

	leaseAcquired, leaseWaits, leaseTakeovers atomic.Uint64
	leaseRenewals, degradedLoads              atomic.Uint64
	staleServed                               atomic.Uint64
	softTimeouts                              atomic.Uint64
	touches                                   atomic.Uint64
	hotReloads                                atomic.Uint64
	leaseWaitNanos                            atomic.Uint64
	fillsRejected                             atomic.Uint64
	refreshStarted, refreshSkipped            atomic.Uint64
	refreshErrors                             atomic.Uint64

	handledErrors atomic.Uint64

	writesCompensating, writesCompensated atomic.Uint64

	loadsRunning atomic.Int64 // loader calls running now (Status)
}

// Stats is a snapshot of a cache's counters. Every counter only grows.
type Stats struct {
	L1Hits       uint64        // GetOrLoad/Get answered by L1 with a value
	L1NotFound   uint64        // answered by L1 with a cached not-found
	L1Misses     uint64        // went past L1
	L2Hits       uint64        // answered by an L2 value
	L2NotFound   uint64        // answered by an L2 not-found entry
	L2Misses     uint64        // L2 had nothing usable
	L2Errors     uint64        // L2 calls that failed
	L2Corrupt    uint64        // L2 payloads the codec could not decode (deleted)
	Loads        uint64        // loader calls (a batch call counts once)
	LoadNotFound uint64        // loads that returned ErrNotFound
	LoadErrors   uint64        // loads that failed or panicked
	LoadTime     time.Duration // total time spent in loaders

	LeasesAcquired uint64        // leases this node won
	LeaseWaits     uint64        // times this node waited on another's lease
	LeaseWaitTime  time.Duration // total time spent waiting
	LeaseTakeovers uint64        // leases won after waiting on another's, or taken over when expired
	LeaseRenewals  uint64        // lease extensions by this node while its loader ran
	// DegradedLoads counts loads outside the lease protocol, kept in L1
	// only: L2 failed, a lease would have outlived the waiter's flight, or
	// the value cannot be stored in L2.
	DegradedLoads uint64
	// StaleServed counts expired L1 entries served because L2 and the
	// loader both failed (WithStaleIfError).
	StaleServed uint64
	// SoftTimeouts counts expired L1 entries served because a load took
	// longer than the soft load timeout (WithSoftLoadTimeout).
	SoftTimeouts uint64
	// Touches counts L2 entries whose life Touch or WithSlidingTTL
	// extended.
	Touches uint64
	// HotReloads counts hot keys read again from L2 into L1 right after an
	// invalidation dropped them (WithHotKeyRefresh).
	HotReloads    uint64
	FillsRejected uint64 // loads not stored: the key changed meanwhile

	RefreshesStarted uint64 // early refreshes this node ran
	RefreshesSkipped uint64 // early refreshes not run: another is under way
	RefreshErrors    uint64 // early refreshes whose loader failed

	HandledErrors uint64 // errors given to the error handler
	// WritesUncertain counts L2 writes that failed with an unknown outcome
	// (sent, no answer) and were handed to the compensating delete;
	// WritesCompensated those of them found in L2 after their deadline and
	// deleted (WithClockSkew).
	WritesUncertain   uint64
	WritesCompensated uint64

	BreakerOpen     bool   // the circuit breaker of some L2 shard refuses calls now
	BreakerOpenings uint64 // times a shard's breaker opened, all shards
	BreakerRejected uint64 // L2 calls refused by open breakers, all shards

	// Shards is the breaker state of each L2 shard the cache has used,
	// sorted by address (one entry with Shard "" on a single-shard L2).
	// Nil when the breaker is off or there is no L2.
	Shards []ShardStats
}

// Stats returns the cache's counters. It is safe to call at any time.
func (c *Cache[V]) Stats() Stats {
	s := &c.stats
	st := Stats{
		L1Hits:            s.l1Hit.Load(),
		L1NotFound:        s.l1NotFound.Load(),
		L1Misses:          s.l1Miss.Load(),
		L2Hits:            s.l2Hit.Load(),
		L2NotFound:        s.l2NotFound.Load(),
		L2Misses:          s.l2Miss.Load(),
		L2Errors:          s.l2Error.Load(),
		L2Corrupt:         s.l2Corrupt.Load(),
		Loads:             s.loads.Load(),
		LoadNotFound:      s.loadNotFound.Load(),
		LoadErrors:        s.loadErrors.Load(),
		LoadTime:          time.Duration(s.loadNanos.Load()),
		LeasesAcquired:    s.leaseAcquired.Load(),
		LeaseWaits:        s.leaseWaits.Load(),
		LeaseWaitTime:     time.Duration(s.leaseWaitNanos.Load()),
		LeaseTakeovers:    s.leaseTakeovers.Load(),
		LeaseRenewals:     s.leaseRenewals.Load(),
		DegradedLoads:     s.degradedLoads.Load(),
		StaleServed:       s.staleServed.Load(),
		SoftTimeouts:      s.softTimeouts.Load(),
		Touches:           s.touches.Load(),
		HotReloads:        s.hotReloads.Load(),
		FillsRejected:     s.fillsRejected.Load(),
		RefreshesStarted:  s.refreshStarted.Load(),
		RefreshesSkipped:  s.refreshSkipped.Load(),
		RefreshErrors:     s.refreshErrors.Load(),
		HandledErrors:     s.handledErrors.Load(),
		WritesUncertain:   s.writesCompensating.Load(),
		WritesCompensated: s.writesCompensated.Load(),
	}
	if bs := c.breakers; bs != nil {
		bs.each(func(b *breaker) {
			sh := ShardStats{Shard: b.shard, Open: b.isOpen(), Openings: b.opened.Load(), Rejected: b.rejected.Load()}
			st.Shards = append(st.Shards, sh)
			st.BreakerOpen = st.BreakerOpen || sh.Open
			st.BreakerOpenings += sh.Openings
			st.BreakerRejected += sh.Rejected
		})
	}
	return st
}
