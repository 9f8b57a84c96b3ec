package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Leases: the cluster-wide load lock and its conditional fill (DESIGN §6.1).

// fetchRemote reads key from L2 and, on a miss, takes the lease and loads it,
// or waits for whoever holds the lease (steps 4-7). load is called at most
// once.
func (c *Cache[V]) fetchRemote(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error)) (V, error) {
	full := c.prefix + key
	var (
		waitingOn uint64 // token of the lease waited on; 0 before waiting
		waitStart time.Time
		poll      = c.cfg.pollMin
	)
	var waitSpan trace.Span
	defer func() {
		if waitingOn != 0 {
			took := time.Since(waitStart)
			c.stats.leaseWaitNanos.Add(uint64(took))
			c.tel.leaseWait.Record(ctx, took.Seconds(), c.tel.cacheOption)
			waitSpan.End()
		}
	}()
	// won finishes a load under a freshly taken lease.
	won := func(token uint64) (V, error) {
		c.stats.leaseAcquired.Add(1)
		if waitingOn != 0 {
			c.stats.leaseTakeovers.Add(1)
		}
		return c.loadLeased(ctx, key, token, gen, load)
	}
	for {
		rctx, cancel := c.remoteCtx(ctx)
		e, err := c.l2.Get(rctx, full)
		cancel()
		if err != nil {
			c.report(ctx, c.remoteErr("GET", key, err))
			return c.loadDegraded(ctx, key, gen, load)
		}
		if v, err := c.accept(ctx, key, e, gen); !errors.Is(err, errUnusable) {
			if e.Kind == KindValue {
				c.maybeRefresh(ctx, key, e, load)
			}
			return v, err
		}
		if e.Kind == KindFailed && e.Version == waitingOn {
			// The load we waited for failed: its callers got the loader's
			// error, and so do we.
			var zero V
			return zero, fmt.Errorf("%w: key %q in cache %q: %s", ErrLoadFailed, key, c.name, e.Payload)
		}
		if e.Kind != KindLease {
			// A miss, or the marker of an older failed load: take the lease.
			c.stats.l2Miss.Add(1)
			if c.cfg.noLeases {
				return c.loadUnleased(ctx, key, gen, load)
			}
			token, cur, ok, err := c.takeLease(ctx, full, e)
			if err != nil {
				c.report(ctx, c.remoteErr("lease", key, err))
				return c.loadDegraded(ctx, key, gen, load)
			}
			if ok {
				return won(token)
			}
			if v, err := c.accept(ctx, key, cur, gen); !errors.Is(err, errUnusable) {
				return v, err
			}
			if cur.Kind != KindLease {
				continue // the key changed under us: read again
			}
			e = cur
		}
		// Wait for the lease holder's result, polling with backoff.
		if waitingOn == 0 {
			waitStart = time.Now()
			c.stats.leaseWaits.Add(1)
			_, waitSpan = c.tel.startSpan(ctx, "tiercache.lease.wait")
		}
		waitingOn = e.Version
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero V
			return zero, fmt.Errorf("tiered: waiting for the lease on %q in cache %q: %w", key, c.name, context.Cause(ctx))
		case <-t.C:
		}
		poll = min(2*poll, c.cfg.pollMax)
	}
}

// takeLease tries to take the lease on full, which held e when last read: an
// empty key is taken with Acquire, the marker of a failed load by a
// compare-and-swap on its version. When the lease is not won, cur is what
// the key holds (zero after a lost compare-and-swap: read again).
func (c *Cache[V]) takeLease(ctx context.Context, full string, e RemoteEntry) (token uint64, cur RemoteEntry, won bool, err error) {
	token = rand.Uint64()
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	if e.Kind == KindFailed {
		won, err = c.l2.CompareAndSwap(rctx, full, e.Version, c.leaseEntry(token))
		return token, cur, won, err
	}
	cur, won, err = c.l2.Acquire(rctx, full, token, time.Now().Add(c.cfg.leaseTTL))
	return token, cur, won, err
}

// leaseEntry is the L2 entry of a lease with token.
func (c *Cache[V]) leaseEntry(token uint64) RemoteEntry {
	return RemoteEntry{Kind: KindLease, Version: token, ExpiresAt: time.Now().Add(c.cfg.leaseTTL)}
}

// loadUnleased loads and writes the result with a plain SET (WithoutLeases).
func (c *Cache[V]) loadUnleased(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error)) (V, error) {
	start := time.Now()
	v, err := load(ctx)
	return c.storeUnleased(ctx, key, gen, v, err, time.Since(start))
}

// storeUnleased writes a load result with a plain SET (WithoutLeases).
func (c *Cache[V]) storeUnleased(ctx context.Context, key string, gen uint64, v V, err error, took time.Duration) (V, error) {
	e, storable := c.entryFor(ctx, key, v, err, took)
	if !storable {
		return v, err
	}
	rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
	defer cancel()
	if serr := c.l2.Set(rctx, c.prefix+key, e); serr != nil {
		c.report(ctx, c.remoteErr("SET", key, serr))
	}
	c.fillL1(key, v, e.Kind == KindNotFound, c.localExpiry(e), gen)
	return v, err
}

// loadDegraded answers from the loader when L2 failed; the result goes to
// L1 only.
func (c *Cache[V]) loadDegraded(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error)) (V, error) {
	v, err := load(ctx)
	return c.keepLocal(ctx, key, v, err, gen)
}

// loadLeased runs the loader under the lease with token and stores the
// result with a conditional fill: only if the key still holds the lease.
func (c *Cache[V]) loadLeased(ctx context.Context, key string, token uint64, gen uint64, load func(context.Context) (V, error)) (V, error) {
	start := time.Now()
	v, err := load(ctx)
	return c.storeLeased(ctx, key, token, gen, v, err, time.Since(start))
}

// storeLeased stores a load result made under the lease with token: a
// conditional fill if it is cacheable. Otherwise the lease becomes a short
// failure marker when the loader failed (so waiters on other nodes return
// the error instead of loading again), or is released when the load was
// cut short by its context (so a waiter takes over at once).
func (c *Cache[V]) storeLeased(ctx context.Context, key string, token uint64, gen uint64, v V, err error, took time.Duration) (V, error) {
	e, storable := c.entryFor(ctx, key, v, err, took)
	full := c.prefix + key
	rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
	defer cancel()
	if !storable {
		var rerr error
		if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			failed := RemoteEntry{Kind: KindFailed, Version: token, Payload: []byte(err.Error()),
				ExpiresAt: time.Now().Add(c.failedTTL())}
			_, rerr = c.l2.CompareAndSwap(rctx, full, token, failed)
		} else {
			_, rerr = c.l2.CompareAndDelete(rctx, full, token)
		}
		if rerr != nil {
			c.report(ctx, c.remoteErr("lease release", key, rerr))
		}
		return v, err
	}
	filled, ferr := c.l2.CompareAndSwap(rctx, full, token, e)
	switch {
	case ferr != nil:
		c.report(ctx, c.remoteErr("fill", key, ferr))
		return c.keepLocal(ctx, key, v, err, gen)
	case !filled:
		// A Delete or Set removed our lease while we loaded: what we
		// loaded may be stale. Callers get it; no tier stores it.
		c.stats.fillsRejected.Add(1)
		return v, err
	}
	c.fillL1(key, v, e.Kind == KindNotFound, c.localExpiry(e), gen)
	return v, err
}

// failedTTL is how long the marker of a failed load stays in L2: long enough
// for every waiter, polling at most every pollMax, to see it.
func (c *Cache[V]) failedTTL() time.Duration { return time.Second + 4*c.cfg.pollMax }
