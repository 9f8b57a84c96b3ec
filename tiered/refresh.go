package tiered

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// refreshWindowFactor times beta times the load time is how long before its
// L2 expiry an L1 entry ends when early refresh is on: -ln(0.05) ≈ 3, so
// XFetch fires inside that window for 95 % of the draws that fire at all.
const refreshWindowFactor = 3

// localExpiry is when an L1 copy of e must end: e's expiry, pulled earlier by
// the early refresh window so that reads reach L2 (where the refresh
// decision is made) before the value expires.
func (c *Cache[V]) localExpiry(e driver.Entry) time.Time {
	if c.cfg.beta == 0 || e.Kind != driver.KindValue {
		return e.ExpiresAt
	}
	return e.ExpiresAt.Add(-time.Duration(refreshWindowFactor * c.cfg.beta * float64(e.LoadTime)))
}

// refreshKeyPrefix separates the refresh guard keys of a cache from its
// value keys (names cannot contain control characters).
const refreshKeyPrefix = "\x00refresh:"

// maybeRefresh decides, for a read that found value entry e in L2, whether to
// start an early refresh (XFetch), and starts it in the background.
func (c *Cache[V]) maybeRefresh(ctx context.Context, key string, e driver.Entry, l loadCall[V]) {
	if c.cfg.beta == 0 || e.LoadTime <= 0 {
		return
	}
	remaining := e.ExpiresAt.Sub(c.cfg.clock.Now())
	if float64(e.LoadTime)*c.cfg.beta*-math.Log(rand.Float64()) < float64(remaining) {
		return
	}
	c.mu.Lock()
	if _, busy := c.refreshing[key]; busy || c.closed.Load() {
		c.mu.Unlock()
		c.stats.refreshSkipped.Add(1)
		return
	}
	c.refreshing[key] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	rctx, done := c.flightCtx(ctx)
	go func() {
		defer c.wg.Done()
		defer done()
		defer func() {
			c.mu.Lock()
			delete(c.refreshing, key)
			c.mu.Unlock()
		}()
		c.refresh(rctx, key, e, l.forKey(c, key))
	}()
}

// refresh reloads key while the cluster keeps serving old. A guard lease on
// a separate key makes one node refresh at a time; the result replaces the
// value only if it is still old (same version), so a Set or Delete made
// meanwhile wins.
func (c *Cache[V]) refresh(ctx context.Context, key string, old driver.Entry, load func(context.Context) (V, error)) {
	guard := c.prefix + refreshKeyPrefix + key // name + ":\x00refresh:" + key, under the cache's ACL key pattern
	token := rand.Uint64()
	rctx, cancel := c.remoteCtx(ctx)
	_, won, err := c.l2.Acquire(rctx, guard, token, c.cfg.clock.Now().Add(c.cfg.leaseTTL))
	cancel()
	if err != nil {
		c.report(ctx, c.remoteErr("refresh lease", key, err))
		return
	}
	if !won {
		c.stats.refreshSkipped.Add(1)
		return
	}
	defer func() {
		rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
		defer cancel()
		if _, err := c.l2.CompareAndDelete(rctx, guard, token); err != nil {
			c.report(ctx, c.remoteErr("refresh release", key, err))
		}
	}()
	c.stats.refreshStarted.Add(1)
	ctx, span := c.tel.startSpan(ctx, "tiercache.refresh")
	defer span.End()
	start := c.cfg.clock.Now()
	v, err := load(ctx)
	e, storable := c.entryFor(ctx, key, v, err, c.cfg.clock.Now().Sub(start))
	if !storable {
		if err != nil {
			c.stats.refreshErrors.Add(1)
			c.report(ctx, err)
		}
		return
	}
	gen := c.generation(key) // before the swap: a Delete landing after it wins
	rctx, cancel = c.remoteCtx(ctx)
	swapped, err := c.l2.CompareAndSwap(rctx, c.prefix+key, old.Version, e)
	cancel()
	switch {
	case err != nil:
		c.report(ctx, c.remoteErr("refresh fill", key, err))
		return
	case !swapped:
		c.stats.fillsRejected.Add(1)
		return
	}
	c.fillAfterWrite(key, gen, v, e.Kind == driver.KindNotFound, c.localExpiry(e))
	if e.Kind != old.Kind || !bytes.Equal(e.Payload, old.Payload) {
		if err := c.publish(ctx, []string{key}); err != nil {
			c.report(ctx, err)
		}
	}
}
