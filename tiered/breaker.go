package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrCircuitOpen is returned (wrapped in ErrRemote) for L2 calls the circuit
// breaker refused because L2 kept failing.
var ErrCircuitOpen = errors.New("tiered: L2 circuit open")

// breaker is a circuit breaker in front of the L2 store. After threshold
// consecutive failures it opens: L2 calls fail at once with ErrCircuitOpen,
// so reads go straight from L1 to the loader instead of each waiting for
// Redis to time out. After coolDown one call is let through as a probe; its
// success closes the breaker, its failure opens it for another coolDown.
//
// Only failures of Redis count: a call the caller gave up on
// (context.Canceled) does not.
type breaker struct {
	threshold int64
	coolDown  time.Duration
	onOpen    func(err error) // told when the breaker opens

	failures  atomic.Int64 // consecutive failures
	openUntil atomic.Int64 // unix nanos; 0 when closed
	probing   atomic.Bool  // a half-open probe is in flight
	rejected  atomic.Uint64
	opened    atomic.Uint64
}

// allow reports whether an L2 call may go ahead, and whether it is the probe
// of a half-open breaker.
func (b *breaker) allow() (ok, probe bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return true, false
	}
	if time.Now().UnixNano() < until || !b.probing.CompareAndSwap(false, true) {
		b.rejected.Add(1)
		return false, false
	}
	return true, true
}

// record takes the outcome of an allowed call.
func (b *breaker) record(err error, probe bool) {
	if probe {
		defer b.probing.Store(false)
	}
	if err == nil || errors.Is(err, context.Canceled) {
		if err == nil {
			b.failures.Store(0)
			b.openUntil.Store(0)
		}
		return
	}
	if n := b.failures.Add(1); n >= b.threshold || probe {
		if b.openUntil.Swap(time.Now().Add(b.coolDown).UnixNano()) == 0 {
			b.opened.Add(1)
			b.onOpen(err)
		}
	}
}

// isOpen reports whether the breaker is refusing calls now.
func (b *breaker) isOpen() bool { return b.openUntil.Load() != 0 }

// guardedRemote is the L2 store behind the breaker.
type guardedRemote struct {
	Remote
	b *breaker
}

func guard[T any](b *breaker, call func() (T, error)) (T, error) {
	ok, probe := b.allow()
	if !ok {
		var zero T
		return zero, ErrCircuitOpen
	}
	v, err := call()
	b.record(err, probe)
	return v, err
}

func (g guardedRemote) Get(ctx context.Context, key string) (RemoteEntry, error) {
	return guard(g.b, func() (RemoteEntry, error) { return g.Remote.Get(ctx, key) })
}

func (g guardedRemote) GetMany(ctx context.Context, keys []string) ([]RemoteEntry, error) {
	return guard(g.b, func() ([]RemoteEntry, error) { return g.Remote.GetMany(ctx, keys) })
}

func (g guardedRemote) Set(ctx context.Context, key string, e RemoteEntry) error {
	_, err := guard(g.b, func() (struct{}, error) { return struct{}{}, g.Remote.Set(ctx, key, e) })
	return err
}

func (g guardedRemote) Delete(ctx context.Context, keys ...string) error {
	_, err := guard(g.b, func() (struct{}, error) { return struct{}{}, g.Remote.Delete(ctx, keys...) })
	return err
}

func (g guardedRemote) Acquire(ctx context.Context, key string, token uint64, expiresAt time.Time) (RemoteEntry, bool, error) {
	var won bool
	e, err := guard(g.b, func() (RemoteEntry, error) {
		e, w, err := g.Remote.Acquire(ctx, key, token, expiresAt)
		won = w
		return e, err
	})
	return e, won, err
}

func (g guardedRemote) CompareAndSwap(ctx context.Context, key string, version uint64, e RemoteEntry) (bool, error) {
	return guard(g.b, func() (bool, error) { return g.Remote.CompareAndSwap(ctx, key, version, e) })
}

func (g guardedRemote) CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error) {
	return guard(g.b, func() (bool, error) { return g.Remote.CompareAndDelete(ctx, key, version) })
}

// breakerOpened reports the opening of the breaker to the error handler:
// the calls it refuses afterwards are counted, not reported one by one.
func (c *Cache[V]) breakerOpened(err error) {
	c.stats.handledErrors.Add(1)
	c.cfg.onError(context.Background(), fmt.Errorf("%w: L2 of cache %q failed %d times in a row; reads go to the loader for %v: %w",
		ErrCircuitOpen, c.name, c.cfg.breakerThreshold, c.cfg.breakerCoolDown, err))
}
