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
	if err := c.resolveWriteTags(ctx, w, []string{key}); err != nil {
		return err
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.set")
	defer func() { endSpan(span, err) }()
	var expiresAt time.Time
	// The snapshot for our L1 fill is taken before the L2 write, so an
	// invalidation from another node that lands in between wins (DESIGN §4).
	gen := c.generation(key)
	if c.l2 != nil {
		e, _ := c.entryFor(ctx, key, v, nil, 0)
		if e.Kind != KindValue && e.Kind != KindTagged {
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
	c.fillAfterWrite(key, gen, v, false, expiresAt)
	return c.publish(ctx, []string{key})
}

// fillAfterWrite puts v in L1 after this node wrote it to L2. gen is key's
// generation taken before the L2 write. It first invalidates key, so that a
// flight of this node that read the old value before the write cannot fill
// L1 afterwards; then it fills only if that invalidation was the only one
// since gen. An invalidation that landed between the snapshot and the fill
// (another node's write or delete of key, a concurrent Delete or Set on this
// node, a flush) may be about a write later than ours, so it wins: the key
// stays out of L1 and the next read goes to L2.
//
// Telling our own invalidation from another's relies on the Local contract
// that Invalidate of one key adds exactly one to its generation; a Local
// that does otherwise stays correct and only loses the fill.
func (c *Cache[V]) fillAfterWrite(key string, gen uint64, v V, absent bool, expiresAt time.Time) {
	c.invalidateLocal(key)
	if c.l1 == nil {
		return
	}
	if now := c.l1.Generation(key); now == gen+1 {
		c.fillL1(key, v, absent, expiresAt, now)
	}
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
	var err error
	if c.busPublish != nil {
		err = c.busPublish(rctx, keys)
	} else {
		err = c.cfg.bus.Publish(rctx, c.name, keys)
	}
	if err != nil {
		return fmt.Errorf("%w: %d keys of cache %q: %w", ErrInvalidation, len(keys), c.name, err)
	}
	return nil
}
