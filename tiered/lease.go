package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel/trace"
)

// Leases: the cluster-wide load lock and its conditional fill (DESIGN §6.1).

// fetchRemote reads key from L2 and, on a miss, takes the lease and loads it,
// or waits for whoever holds the lease (steps 4-7). load is called at most
// once.
//
// A waiter takes the lease over when it vanishes or expires (its own expiry
// passed, or it had no TTL in Redis), and loads for itself (a degraded load,
// kept in L1 only) when it has waited half its flight (the load timeout) for
// a holder that is still loading, or the holder found its value cannot be
// stored. Callers never see the flight's own end as an error of the lease.
//
// pre, if given, is what the caller already read from L2 under key: the
// first round uses it instead of reading again.
//
// A waiter re-reads the key when its poll timer fires (backoff from the
// poll minimum to the maximum) or when a waking bus says the lease was
// resolved (wake.go), whichever comes first.
func (c *Cache[V]) fetchRemote(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error), pre ...preRead) (V, error) {
	full := c.prefix + key
	var (
		waitingOn uint64 // token of the lease waited on; 0 before waiting
		waitStart time.Time
		poll      = c.cfg.pollMin
	)
	var waitSpan trace.Span
	lw := leaseWait{w: c.waker(), ns: c.name, key: key}
	defer lw.end()
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
		lw.end()
		c.stats.leaseAcquired.Add(1)
		if waitingOn != 0 {
			c.stats.leaseTakeovers.Add(1)
		}
		return c.loadLeased(ctx, key, token, gen, load)
	}
	// alone loads without the lease protocol; the result stays in L1.
	alone := func() (V, error) {
		c.stats.degradedLoads.Add(1)
		return c.loadDegraded(ctx, key, gen, load)
	}
	var sent uint64 // the token of our last read-or-lease whose outcome is unknown
	for {
		var r preRead
		if len(pre) > 0 {
			r, pre = pre[0], nil
		} else {
			r = c.readOrLease(ctx, full)
		}
		e, err := r.e, r.err
		switch {
		case r.won:
			c.stats.l2Miss.Add(1)
			return won(r.token)
		case err != nil:
			sent = r.token
		case e.Kind == driver.KindLease && sent != 0 && e.Version == sent:
			// A read that failed had taken the lease after all.
			return won(sent)
		}
		if err != nil {
			if ctx.Err() != nil {
				// The flight ended (Close, or the load timeout): nobody is
				// left to load for.
				var zero V
				return zero, fmt.Errorf("tiered: reading %q in cache %q: %w", key, c.name, context.Cause(ctx))
			}
			c.report(ctx, c.remoteErr("GET", key, err))
			v, err := alone()
			if sent != 0 {
				// The read may have taken the lease before it failed: give
				// it back, so that other nodes need not wait for its TTL.
				c.resolveLease(ctx, key, sent, "release", nil)
			}
			return v, err
		}
		if v, err := c.accept(ctx, key, e, gen); !errors.Is(err, errUnusable) {
			if e.Kind == driver.KindValue {
				c.maybeRefresh(ctx, key, e, load)
			}
			return v, err
		}
		switch {
		case e.Kind == driver.KindFailed && e.Version == waitingOn:
			// The load we waited for failed: its callers got the loader's
			// error, and so do we.
			var zero V
			return zero, fmt.Errorf("%w: key %q in cache %q: %s", ErrLoadFailed, key, c.name, e.Payload)
		case e.Kind == driver.KindUnstorable:
			// The value cannot be stored in L2: every node loads for itself
			// while the marker lasts.
			return alone()
		case e.Kind == driver.KindLease && c.leaseExpired(e):
			// The holder died, or the lease is planted or corrupt: take it
			// over by its token.
			if c.cfg.noLeases {
				return c.loadUnleased(ctx, key, gen, load)
			}
			token, ok, err := c.takeOver(ctx, full, e)
			if err != nil {
				c.report(ctx, c.remoteErr("lease takeover", key, err))
				return alone()
			}
			if ok {
				if waitingOn == 0 {
					waitingOn = e.Version // count it as a takeover
					waitStart = time.Now()
					_, waitSpan = c.tel.startSpan(ctx, "tiercache.lease.wait")
				}
				return won(token)
			}
			continue // someone else changed the key: read again
		case e.Kind != driver.KindLease:
			// A miss, or the marker of an older failed load: take the lease.
			c.stats.l2Miss.Add(1)
			if c.cfg.noLeases {
				return c.loadUnleased(ctx, key, gen, load)
			}
			token, cur, ok, err := c.takeLease(ctx, full, e)
			if err != nil {
				c.report(ctx, c.remoteErr("lease", key, err))
				return alone()
			}
			if ok {
				return won(token)
			}
			if v, err := c.accept(ctx, key, cur, gen); !errors.Is(err, errUnusable) {
				return v, err
			}
			if cur.Kind != driver.KindLease || c.leaseExpired(cur) {
				continue // the key changed under us, or the lease is dead: read again
			}
			e = cur
		}
		// Wait for the lease holder's result: woken when it lands, polling
		// with backoff as the fallback.
		if waitingOn == 0 {
			waitStart = time.Now()
			c.stats.leaseWaits.Add(1)
			_, waitSpan = c.tel.startSpan(ctx, "tiercache.lease.wait")
		}
		waitingOn = e.Version
		lw.await(e.Version)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < c.cfg.loadTimeout/2 {
			// Half our flight is gone and the holder is still loading: load
			// for ourselves with the other half rather than fail.
			return alone()
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return alone()
			}
			var zero V
			return zero, fmt.Errorf("tiered: waiting for the lease on %q in cache %q: %w", key, c.name, context.Cause(ctx))
		case <-t.C:
		case <-lw.wake:
			t.Stop()
		}
		poll = min(2*poll, c.cfg.pollMax)
	}
}

// leaseExpired reports whether lease e has ended: its own expiry passed, or
// lies further ahead than any lease of this cache can (a lease is written
// and renewed to expire LeaseTTL from its holder's now; twice that plus a
// second allows for clock skew between nodes): such a lease is planted or
// corrupt, and must not block the key (its TTL in Redis may be none). Nodes
// of one cache are expected to share its LeaseTTL.
func (c *Cache[V]) leaseExpired(e driver.Entry) bool {
	now := c.cfg.now()
	return !e.ExpiresAt.After(now) || e.ExpiresAt.After(now.Add(2*c.cfg.leaseTTL+time.Second))
}

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
	cur, won, err = c.l2.Acquire(rctx, full, token, c.cfg.now().Add(c.cfg.leaseTTL))
	return token, cur, won, err
}

// leaseEntry is the L2 entry of a lease with token, expiring a LeaseTTL
// from now.
func (c *Cache[V]) leaseEntry(token uint64) driver.Entry {
	return driver.Entry{Kind: driver.KindLease, Version: token, ExpiresAt: c.cfg.now().Add(c.cfg.leaseTTL)}
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
	c.fillL1(key, v, e.Kind == driver.KindNotFound, c.localExpiry(e), gen)
	return v, err
}

// loadDegraded answers from the loader when L2 failed; the result goes to
// L1 only.
func (c *Cache[V]) loadDegraded(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error)) (V, error) {
	v, err := load(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		if sv, ok := c.serveStale(ctx, key); ok {
			return sv, nil
		}
	}
	return c.keepLocal(ctx, key, v, err, gen)
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
	if !ok || absent || c.cfg.now().Sub(expiredAt) > c.cfg.staleIfError {
		return zero, false
	}
	c.stats.staleServed.Add(1)
	trace.SpanFromContext(ctx).SetAttributes(AttrResult.String("stale"))
	return v, true
}

// loadLeased runs the loader under the lease with token, renewing the lease
// while it runs, and resolves the lease with the result.
func (c *Cache[V]) loadLeased(ctx context.Context, key string, token uint64, gen uint64, load func(context.Context) (V, error)) (V, error) {
	defer c.holdLease(key)() // tells a waking bus once storeLeased resolved the lease
	stop := c.renewLeases(ctx, []string{key}, []uint64{token})
	start := time.Now()
	v, err := load(ctx)
	stop()
	return c.storeLeased(ctx, key, token, gen, v, err, time.Since(start))
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
		tick := time.NewTicker(c.cfg.leaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
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
				ExpiresAt: c.cfg.now().Add(c.failedTTL())}
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
				ExpiresAt: c.cfg.now().Add(c.failedTTL())}
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
