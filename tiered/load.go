package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel/trace"
)

// Loader calls and the L2 entries they produce.

// entryFor builds the L2 entry for a load result. storable is false when the
// result must not be cached: a loader error, a not-found with negative
// caching off, or a value the codec cannot encode (reported).
func (c *Cache[V]) entryFor(ctx context.Context, key string, v V, err error, took time.Duration) (e driver.Entry, storable bool) {
	e.LoadTime, e.Version = took, rand.Uint64()
	switch {
	case err == nil:
		payload, merr := c.l2.Marshal(v)
		if merr != nil {
			c.report(ctx, fmt.Errorf("%w: encoding %q in cache %q: %w", ErrCodec, key, c.name, merr))
			return e, false
		}
		ttl, _ := c.ttlFor(ctx, key, false)
		e.Kind, e.Payload = driver.KindValue, payload
		e.ExpiresAt = c.cfg.clock.Now().Add(c.jittered(ttl))
		if !c.tagEntry(ctx, key, &e) {
			return e, false
		}
		return e, true
	case errors.Is(err, ErrNotFound):
		ttl, store := c.ttlFor(ctx, key, true)
		if !store {
			return e, false
		}
		e.Kind = driver.KindNotFound
		e.ExpiresAt = c.cfg.clock.Now().Add(c.jittered(ttl))
		return e, true
	}
	return e, false
}

// callLoader runs load for one key (see runLoad). The loader's context
// carries the call's scope (SetTTL and the other setters).
func (c *Cache[V]) callLoader(ctx context.Context, key string, load Loader[V]) (V, error) {
	ctx, sc := withScope(ctx, []string{key})
	g := c.beforeLoad(ctx)
	v, err := runLoad(c, ctx, "key "+strconv.Quote(key), func(ctx context.Context) (V, error) { return load(ctx, key) })
	if err == nil {
		err = c.afterLoad(ctx, sc, g)
	}
	return v, sc.result(err)
}

// runLoad runs one loader call (single or batch): it waits for a loader slot,
// counts and times the call in a span, and turns a panic into an error
// carrying the stack. what names the call in that error.
func runLoad[V, T any](c *Cache[V], ctx context.Context, what string, call func(context.Context) (T, error)) (out T, err error) {
	release, err := c.loadSlot(ctx)
	if err != nil {
		return out, err
	}
	defer release()
	c.stats.loads.Add(1)
	c.stats.loadsRunning.Add(1)
	defer c.stats.loadsRunning.Add(-1)
	ctx, span := c.tel.startSpan(ctx, "tiercache.load")
	start := c.cfg.clock.Now()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s in cache %q: %v\n%s", ErrLoaderPanic, what, c.name, r, debug.Stack())
		}
		c.endLoad(ctx, span, start, err)
		c.countLoad(err)
	}()
	return call(ctx)
}

// loadSlot waits for one of the WithMaxConcurrentLoads slots, if there is a
// limit, and returns the function that gives it back.
func (c *Cache[V]) loadSlot(ctx context.Context) (release func(), err error) {
	if c.loadSem == nil {
		return noCancel, nil
	}
	select {
	case c.loadSem <- struct{}{}:
		return c.releaseSlot, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("tiered: waiting for a loader slot in cache %q: %w", c.name, context.Cause(ctx))
	}
}

func (c *Cache[V]) releaseSlot() { <-c.loadSem }

// endLoad records a loader call's duration and ends its span.
func (c *Cache[V]) endLoad(ctx context.Context, span trace.Span, start time.Time, err error) {
	took := c.cfg.clock.Now().Sub(start)
	c.stats.loadNanos.Add(uint64(took))
	c.tel.loadTime.Record(ctx, took.Seconds(), c.tel.cacheOption)
	endSpan(span, err)
}

func (c *Cache[V]) countLoad(err error) {
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		c.stats.loadNotFound.Add(1)
	default:
		c.stats.loadErrors.Add(1)
	}
}
