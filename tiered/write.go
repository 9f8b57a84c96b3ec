package tiered

import (
	"context"
	"fmt"
	"time"
)

// Write path: Set and Delete (DESIGN §4).

// Set writes v under key through both tiers and tells the other nodes to
// drop their copies. An L2 failure is returned (L1 is left without the key);
// a failed broadcast returns an error matching ErrInvalidation. Options
// (TTL, Tags) apply to this write only; an invalid one fails the call
// before anything is written.
func (c *Cache[V]) Set(ctx context.Context, key string, v V, opts ...WriteOption) (err error) {
	if err := c.check(key); err != nil {
		return err
	}
	w, err := writeOptions(opts)
	if err != nil {
		return err
	}
	ctx = writeCtx(ctx, w, key)
	ctx, span := c.tel.startSpan(ctx, "tiercache.set")
	defer func() { endSpan(span, err) }()
	var expiresAt time.Time
	if c.l2 != nil {
		e, _ := c.entryFor(ctx, key, v, nil, 0)
		if e.Kind != KindValue {
			return fmt.Errorf("%w: encoding %q in cache %q", ErrCodec, key, c.name)
		}
		rctx, cancel := c.remoteCtx(ctx)
		err := c.l2.Set(rctx, c.prefix+key, e)
		cancel()
		if err != nil {
			c.invalidateLocal(key)
			return c.remoteErr("SET", key, err)
		}
		expiresAt = e.ExpiresAt
	} else if w.ttl > 0 {
		expiresAt = time.Now().Add(w.ttl)
	}
	// Invalidate after the L2 write: a flight that read the old value
	// before it must not fill L1 afterwards.
	c.invalidateLocal(key)
	c.fillL1(key, v, false, expiresAt, c.generation(key))
	return c.publish(ctx, []string{key})
}

// Delete removes keys from both tiers (killing any lease in flight, so no
// stale fill lands) and tells the other nodes to drop them. An L2 failure is
// returned; a failed broadcast returns an error matching ErrInvalidation.
// Delete is idempotent: retry it on error.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) (err error) {
	for _, k := range keys {
		if err := c.check(k); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.delete")
	defer func() { endSpan(span, err) }()
	if c.l2 != nil {
		full := make([]string, len(keys))
		for i, k := range keys {
			full[i] = c.prefix + k
		}
		rctx, cancel := c.remoteCtx(ctx)
		err := c.l2.Delete(rctx, full...)
		cancel()
		c.invalidateLocal(keys...)
		if err != nil {
			return c.remoteErr("DEL", keys[0], err)
		}
	} else {
		c.invalidateLocal(keys...)
	}
	return c.publish(ctx, keys)
}

func (c *Cache[V]) invalidateLocal(keys ...string) {
	if c.l1 != nil {
		c.l1.Invalidate(keys...)
	}
}

func (c *Cache[V]) publish(ctx context.Context, keys []string) error {
	if c.cfg.bus == nil {
		return nil
	}
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	if err := c.cfg.bus.Publish(rctx, c.name, keys); err != nil {
		return fmt.Errorf("%w: %d keys of cache %q: %w", ErrInvalidation, len(keys), c.name, err)
	}
	return nil
}
