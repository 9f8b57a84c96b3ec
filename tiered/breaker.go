package tiered

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// ErrCircuitOpen is returned (wrapped in ErrRemote) for L2 calls the circuit
// breaker of the key's shard refused because that shard kept being
// unavailable.
var ErrCircuitOpen = errors.New("tiered: L2 circuit open")

// errRemoteTimeout is the cause of the context of an L2 call whose remote
// timeout (WithRemoteTimeout) expired: a shard that does not answer within
// it counts as unavailable, unlike the caller's own deadline.
var errRemoteTimeout = errors.New("tiered: L2 call exceeded the remote timeout")

// outcome classifies the result of an L2 call for the breaker.
type outcome uint8

const (
	// neutral says nothing about the shard's health: the caller's own
	// cancellation or deadline, our validation errors (key too long, value
	// too large), error replies that prove the server is up (NOPERM,
	// WRONGTYPE, script errors), and errors marked answered
	// (driver.AnsweredError: a Cluster refusing every key while another
	// shard fails over).
	neutral outcome = iota
	// healthy is a call the shard answered.
	healthy
	// down is a call that found the shard unavailable.
	down
)

// classify returns the outcome of an L2 call made with ctx that returned
// err.
func classify(ctx context.Context, err error) outcome {
	if err == nil {
		return healthy
	}
	if isAnswered(err) {
		// The shard's node answered (a Cluster refusing every key while
		// another shard fails over): not this shard's failure, even if
		// the client's retries of the refusal ran out our remote timeout.
		return neutral
	}
	if ctx.Err() != nil {
		// The call's context ended: our remote timeout means the shard did
		// not answer in time; anything else is the caller giving up.
		if context.Cause(ctx) == errRemoteTimeout {
			return down
		}
		return neutral
	}
	if isUnavailable(err) {
		return down
	}
	return neutral
}

// isAnswered reports whether err carries the mark of an error the shard's
// node answered (driver.AnsweredError).
func isAnswered(err error) bool {
	var a driver.AnsweredError
	return errors.As(err, &a) && a.Answered()
}

// isUnavailable reports whether err carries the unavailability mark.
func isUnavailable(err error) bool {
	var u driver.UnavailableError
	return errors.As(err, &u) && u.Unavailable()
}

// breaker is the circuit breaker of one shard. After threshold consecutive
// calls that found the shard unavailable it opens: calls fail at once with
// ErrCircuitOpen, so reads go from L1 straight to the loader instead of each
// waiting for a timeout. After coolDown one call is let through as a probe;
// its success closes the breaker, its failure keeps it open for another
// coolDown.
//
// Every opening and closing starts a new generation. A call records its
// outcome only against the generation it was admitted in, so a call admitted
// before an opening can neither close the breaker nor count towards another
// opening.
type breaker struct {
	shard string
	set   *breakers

	openUntil atomic.Int64  // unix nanos of the end of the cool-down; 0 when closed
	failures  atomic.Int64  // consecutive unavailable outcomes in this generation
	gen       atomic.Uint64 // generation; changes on every opening and closing
	probing   atomic.Bool   // a half-open probe is in flight
	rejected  atomic.Uint64
	opened    atomic.Uint64
	mu        sync.Mutex // serialises openings and closings
}

// ticket is what an admitted call carries to record.
type ticket struct {
	gen   uint64
	probe bool
}

// allow reports whether a call may go ahead, with its ticket.
func (b *breaker) allow() (ticket, bool) {
	gen := b.gen.Load()
	until := b.openUntil.Load()
	if until == 0 {
		return ticket{gen: gen}, true
	}
	if b.set.now().UnixNano() < until || !b.probing.CompareAndSwap(false, true) {
		b.rejected.Add(1)
		return ticket{}, false
	}
	// Re-read: the breaker may have closed between the loads above.
	return ticket{gen: b.gen.Load(), probe: true}, true
}

// record takes the outcome of a call admitted with t.
func (b *breaker) record(t ticket, o outcome, err error) {
	if t.probe {
		defer b.probing.Store(false)
	}
	if b.gen.Load() != t.gen {
		return // admitted before an opening or closing: it says nothing now
	}
	switch o {
	case healthy:
		if t.probe {
			b.close(t.gen)
		} else if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
	case down:
		if t.probe {
			// Still down: another cool-down, no new report.
			b.openUntil.Store(b.set.now().Add(b.set.coolDown).UnixNano())
			return
		}
		if b.failures.Add(1) >= b.set.threshold {
			b.open(t.gen, err)
		}
	}
}

// open opens the breaker if it is still in generation gen and closed.
func (b *breaker) open(gen uint64, err error) {
	b.mu.Lock()
	if b.gen.Load() != gen || b.openUntil.Load() != 0 {
		b.mu.Unlock()
		return
	}
	b.openUntil.Store(b.set.now().Add(b.set.coolDown).UnixNano())
	b.failures.Store(0)
	b.gen.Add(1)
	b.opened.Add(1)
	b.mu.Unlock()
	b.set.onOpen(b.shard, err)
}

// close closes the breaker if it is still in generation gen.
func (b *breaker) close(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen.Load() != gen {
		return
	}
	b.failures.Store(0)
	b.openUntil.Store(0)
	b.gen.Add(1)
}

// isOpen reports whether the breaker is refusing calls now.
func (b *breaker) isOpen() bool { return b.openUntil.Load() != 0 }

// breakers holds one breaker per shard, created on first use.
type breakers struct {
	threshold int64
	coolDown  time.Duration
	now       func() time.Time
	onOpen    func(shard string, err error) // told once per opening

	single *breaker // the shard "" (standalone, Sentinel)
	shards sync.Map // shard address -> *breaker
}

func newBreakers(threshold int, coolDown time.Duration, now func() time.Time, onOpen func(string, error)) *breakers {
	s := &breakers{threshold: int64(threshold), coolDown: coolDown, now: now, onOpen: onOpen}
	s.single = &breaker{set: s}
	return s
}

// of returns the breaker of shard.
func (s *breakers) of(shard string) *breaker {
	if shard == "" {
		return s.single
	}
	if b, ok := s.shards.Load(shard); ok {
		return b.(*breaker)
	}
	b, _ := s.shards.LoadOrStore(shard, &breaker{shard: shard, set: s})
	return b.(*breaker)
}

// each calls f with every breaker that has been used, in shard order.
func (s *breakers) each(f func(*breaker)) {
	all := []*breaker{s.single}
	s.shards.Range(func(_, b any) bool { all = append(all, b.(*breaker)); return true })
	slices.SortFunc(all, func(a, b *breaker) int { return cmp.Compare(a.shard, b.shard) })
	for _, b := range all {
		if b == s.single && b.opened.Load() == 0 && b.rejected.Load() == 0 && len(all) > 1 {
			continue // an unused default shard next to real ones
		}
		f(b)
	}
}

// ShardStats is the circuit breaker state of one L2 shard.
type ShardStats struct {
	// Shard is the address of the shard's primary; "" for a single-shard
	// L2 (standalone or Sentinel).
	Shard string
	// Open reports whether the shard's breaker refuses calls now.
	Open bool
	// Openings counts the times the breaker opened.
	Openings uint64
	// Rejected counts the L2 calls it refused.
	Rejected uint64
}

// breakerOpened reports the opening of a shard's breaker to the error
// handler, once per opening: the calls it refuses afterwards are counted,
// not reported one by one.
func (c *Cache[V]) breakerOpened(shard string, err error) {
	where := "L2"
	if shard != "" {
		where = "L2 shard " + shard
	}
	c.stats.handledErrors.Add(1)
	c.cfg.onError(context.Background(), fmt.Errorf("%w: %s of cache %q was unavailable %d times in a row; its keys go to the loader for %v: %w",
		ErrCircuitOpen, where, c.name, c.cfg.breakerThreshold, c.cfg.breakerCoolDown, err))
}
