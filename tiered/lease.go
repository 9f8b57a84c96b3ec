package tiered

import (
	"context"
	"errors"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel/trace"
)

// Leases: the cluster-wide load lock and its conditional fill (DESIGN §6.1).

// takeOver replaces the dead lease e under full by a lease of its own, by a
// compare-and-swap on e's token.
func (c *Cache[V]) takeOver(ctx context.Context, full string, e driver.Entry) (token uint64, won bool, err error) {
	token = c.newToken()
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	won, err = c.l2.CompareAndSwap(rctx, full, e.Version, c.leaseEntry(token))
	return token, won, err
}

// takeLease tries to take the lease on full, which held e when last read: an
// empty key is taken with Acquire, the marker of a failed load by a
// compare-and-swap on its version. When the lease is not won, cur is what
// the key holds (zero after a lost compare-and-swap: read again).
func (c *Cache[V]) takeLease(ctx context.Context, full string, e driver.Entry) (token uint64, cur driver.Entry, won bool, err error) {
	token = c.newToken()
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	if e.Kind == driver.KindFailed {
		won, err = c.l2.CompareAndSwap(rctx, full, e.Version, c.leaseEntry(token))
		return token, cur, won, err
	}
	cur, won, err = c.l2.Acquire(rctx, full, token, c.cfg.clock.Now().Add(c.cfg.leaseTTL))
	return token, cur, won, err
}

// leaseEntry is the L2 entry of a lease with token, expiring a LeaseTTL
// from now.
func (c *Cache[V]) leaseEntry(token uint64) driver.Entry {
	return driver.Entry{Kind: driver.KindLease, Version: token, ExpiresAt: c.cfg.clock.Now().Add(c.cfg.leaseTTL)}
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
	c.fillL1(key, v, e.Kind == driver.KindNotFound, c.localExpiry(e), gen)
	return v, err
}

// serveStale returns key's expired L1 value when WithStaleIfError allows it:
// L2 and the loader have both failed, and the entry expired less than the
// window ago.
func (c *Cache[V]) serveStale(ctx context.Context, key string) (V, bool) {
	var zero V
	if c.stale == nil {
		return zero, false
	}
	v, absent, expiredAt, ok := c.stale.GetStale(key)
	if !ok || absent || c.cfg.clock.Now().Sub(expiredAt) > c.cfg.staleIfError {
		return zero, false
	}
	c.stats.staleServed.Add(1)
	trace.SpanFromContext(ctx).SetAttributes(AttrResult.String("stale"))
	return v, true
}

// renewLeases extends the leases tokens[i] on keys[i] to a full LeaseTTL
// every LeaseTTL/3 until stop is called (stop waits for the renewing
// goroutine). A lease found taken (a Set or Delete replaced it) is no longer
// renewed; a failed renewal is reported and retried at the next tick.
func (c *Cache[V]) renewLeases(ctx context.Context, keys []string, tokens []uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		held := make([]bool, len(keys))
		for i := range held {
			held[i] = true
		}
		tick := c.cfg.clock.NewTicker(c.cfg.leaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C():
			}
			for i, key := range keys {
				if !held[i] {
					continue
				}
				rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
				ok, err := c.l2.CompareAndSwap(rctx, c.prefix+key, tokens[i], c.leaseEntry(tokens[i]))
				cancel()
				switch {
				case err != nil:
					c.report(ctx, c.remoteErr("lease renewal", key, err))
				case !ok:
					held[i] = false
				default:
					c.stats.leaseRenewals.Add(1)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// storeLeased stores a load result made under the lease with token and
// always resolves the lease: a conditional fill if the result is cacheable.
// Otherwise the lease becomes a short failure marker when the loader failed
// (so waiters on other nodes return the error instead of loading again), or
// is released when the load was cut short by its context (so a waiter takes
// over at once). When the fill fails, the lease is released, or replaced by
// a short "unstorable" marker when L2 can never store the value (too large),
// so other nodes load for themselves instead of waiting. Every resolving
// write is retried once on a fresh context.
func (c *Cache[V]) storeLeased(ctx context.Context, key string, token uint64, gen uint64, v V, err error, took time.Duration) (V, error) {
	e, storable := c.entryFor(ctx, key, v, err, took)
	full := c.prefix + key
	if !storable {
		if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			failed := driver.Entry{Kind: driver.KindFailed, Version: token, Payload: []byte(err.Error()),
				ExpiresAt: c.cfg.clock.Now().Add(c.failedTTL())}
			c.resolveLease(ctx, key, token, "failure marker", &failed)
		} else {
			c.resolveLease(ctx, key, token, "release", nil)
		}
		return v, err
	}
	rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
	filled, ferr := c.l2.CompareAndSwap(rctx, full, token, e)
	cancel()
	switch {
	case ferr != nil:
		c.report(ctx, c.remoteErr("fill", key, ferr))
		if isUnstorable(ferr) {
			marker := driver.Entry{Kind: driver.KindUnstorable, Version: token, Payload: []byte(ferr.Error()),
				ExpiresAt: c.cfg.clock.Now().Add(c.failedTTL())}
			c.resolveLease(ctx, key, token, "unstorable marker", &marker)
		} else {
			c.resolveLease(ctx, key, token, "release", nil)
		}
		return c.keepLocal(ctx, key, v, err, gen)
	case !filled:
		// A Delete or Set removed our lease while we loaded: what we
		// loaded may be stale. Callers get it; no tier stores it.
		c.stats.fillsRejected.Add(1)
		return v, err
	}
	c.fillL1(key, v, e.Kind == driver.KindNotFound, c.localExpiry(e), gen)
	return v, err
}

// resolveLease replaces the lease with token on key by marker, or deletes
// it when marker is nil, each attempt on a fresh context bounded by the
// remote timeout, retrying once. A marker that cannot be written falls back
// to a release. Failures are reported; if every attempt fails the lease
// ends by its own TTL, as it is no longer renewed.
func (c *Cache[V]) resolveLease(ctx context.Context, key string, token uint64, what string, marker *driver.Entry) {
	full := c.prefix + key
	var err error
	for range 2 {
		rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
		if marker != nil {
			_, err = c.l2.CompareAndSwap(rctx, full, token, *marker)
		} else {
			_, err = c.l2.CompareAndDelete(rctx, full, token)
		}
		cancel()
		if err == nil {
			return
		}
		c.report(ctx, c.remoteErr("lease "+what, key, err))
	}
	if marker != nil {
		c.resolveLease(ctx, key, token, "release", nil)
	}
}

// isUnstorable reports whether err says L2 can never store the value (it
// is too large): package remote marks such errors with a method
// Unstorable() bool.
func isUnstorable(err error) bool {
	var u driver.UnstorableError
	return errors.As(err, &u) && u.Unstorable()
}

// failedTTL is how long the marker of a failed load stays in L2: long enough
// for every waiter, polling at most every pollMax, to see it.
func (c *Cache[V]) failedTTL() time.Duration { return time.Second + 4*c.cfg.pollMax }
