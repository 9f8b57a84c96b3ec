package tiered

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
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
	keys := []string{key}
	errs, perr := c.write(ctx, keys, func(int) V { return v }, w)
	if errs[0] != nil {
		return errs[0]
	}
	return perr
}

// write is the write path of Set and SetMany (DESIGN §4), written once:
// keys[i] gets value(i). It writes the L2 entries (one SET, carried with
// its invalidation in the same round trip when the bus can, for one key;
// one pipelined call per shard for a batch), fills L1 with what landed and
// drops what failed, then publishes the invalidation of the keys written.
// errs[i] is keys[i]'s error; perr the publish's.
func (c *Cache[V]) write(ctx context.Context, keys []string, value func(i int) V, w writeConfig) (errs []error, perr error) {
	defer c.detach(keys)
	errs = make([]error, len(keys))
	expiries := make([]time.Time, len(keys))
	// The snapshots for our L1 fills are taken before the L2 writes, so an
	// invalidation from another node that lands in between wins.
	gens := make([]uint64, len(keys))
	for i, k := range keys {
		gens[i] = c.generation(k)
	}
	carried := false
	if c.l2 != nil {
		full := make([]string, 0, len(keys))
		entries := make([]driver.Entry, 0, len(keys))
		idx := make([]int, 0, len(keys))
		for i, k := range keys {
			e, _ := c.entryFor(ctx, k, value(i), nil, 0)
			if e.Kind != driver.KindValue && e.Kind != driver.KindTagged {
				errs[i] = fmt.Errorf("%w: encoding %q in cache %q", ErrCodec, k, c.name)
				continue
			}
			full, entries, idx = append(full, c.prefix+k), append(entries, e), append(idx, i)
			expiries[i] = e.ExpiresAt
		}
		var rerrs []error
		if len(full) == 1 && len(keys) == 1 {
			rctx, cancel := c.remoteCtx(ctx)
			c.fence(rctx, &entries[0])
			var err error
			carried, err, perr = c.carrySet(rctx, keys[0], entries[0])
			cancel()
			if carried {
				rerrs = []error{err}
				perr = c.publishErr(1, perr)
			}
		}
		if !carried {
			rerrs = c.setManyRemote(ctx, full, entries)
		}
		for j, rerr := range rerrs {
			i := idx[j]
			if rerr != nil {
				if unknownOutcome(rerr) {
					c.compensate(keys[i], entries[j])
				}
				errs[i] = c.remoteErr("SET", keys[i], rerr)
			}
		}
	} else if w.ttl > 0 {
		for i := range keys {
			expiries[i] = c.cfg.clock.Now().Add(w.ttl)
		}
	}
	// Invalidate after the L2 writes, failed keys included.
	var done []string
	for i, k := range keys {
		if errs[i] != nil {
			c.invalidateLocal(k)
			continue
		}
		gen := gens[i]
		if c.l2 == nil {
			// No L2 write to race with: snapshot now, so that another key
			// of this batch sharing k's generation stripe cannot cost k
			// its fill (L1 is its only tier).
			gen = c.generation(k)
		}
		c.fillAfterWrite(k, gen, value(i), false, expiries[i])
		done = append(done, k)
	}
	if len(done) > 0 && !carried {
		perr = c.publish(ctx, done)
	}
	return errs, perr
}

// carrySet writes e under key and publishes the key's invalidation in one
// round trip, when the bus and L2 can (same Redis client; on a Cluster a
// bus channel served by the key's primary; the channel idle, so that
// writes under load keep being batched): SET then PUBLISH on one
// connection, which Redis runs in order, so the invalidation still follows
// the write (DESIGN §4). carried reports whether it wrote; err is then the
// write's outcome and pubErr the invalidation's. When it did not, the
// caller writes and publishes the usual way. A carried write that failed
// while ctx is live (on a Cluster, MOVED after a slot moved) is reported as
// not carried, so the usual path writes it again; its message, if it went
// out, only made other nodes drop a copy early.
func (c *Cache[V]) carrySet(ctx context.Context, key string, e driver.Entry) (carried bool, err, pubErr error) {
	return c.carryWrite(ctx, key, "set", func(ctx context.Context, l2key, command, channel string, payload []byte) (error, error) {
		return c.l2carry.SetAndPublish(ctx, l2key, e, command, channel, payload)
	})
}

// carryDelete is carrySet for the Delete of one key: DEL then PUBLISH in
// one round trip.
func (c *Cache[V]) carryDelete(ctx context.Context, key string) (carried bool, err, pubErr error) {
	return c.carryWrite(ctx, key, "delete", func(ctx context.Context, l2key, command, channel string, payload []byte) (error, error) {
		return c.l2carry.DeleteAndPublish(ctx, l2key, command, channel, payload)
	})
}

// carryWrite runs write (an L2 write of key followed by the bus message on
// the same connection) when the bus carries key's invalidation, behind the
// key's breaker and measured as op. See carrySet for what it returns.
func (c *Cache[V]) carryWrite(ctx context.Context, key, op string, write func(ctx context.Context, l2key, command, channel string, payload []byte) (error, error)) (carried bool, err, pubErr error) {
	if c.busCarry == nil {
		return false, nil, nil
	}
	l2key := c.prefix + key
	br := c.funnel.breakerOf(l2key)
	if br != nil && br.isOpen() {
		return false, nil, nil // the usual path reports it
	}
	var writeErr error
	carried, pubErr = c.busCarry.Carry(ctx, key, l2key, c.l2carry.Carrier(), func(ctx context.Context, command, channel string, payload []byte) error {
		var perr error
		_, writeErr = run(ctx, c.funnel, op, br, func(ctx context.Context) (struct{}, error) {
			werr, pe := write(ctx, l2key, command, channel, payload)
			perr = pe
			return struct{}{}, werr
		})
		return perr
	})
	if !carried || (writeErr != nil && ctx.Err() == nil) {
		return false, nil, nil
	}
	return true, writeErr, pubErr
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
	now := c.l1.Generation(key)
	if now != gen+1 {
		return
	}
	if wf, ok := c.l1.(driver.WrittenFiller[V]); ok && c.l2 != nil {
		wf.FillWritten(key, v, absent, c.localTTL(expiresAt), now)
		return
	}
	c.fillL1(key, v, absent, expiresAt, now)
}

// Delete removes keys from both tiers (killing any lease in flight, so no
// stale fill lands) and tells the other nodes to drop them. An L2 failure is
// returned; a failed broadcast returns an error matching ErrInvalidation.
// An invalid key (empty, reserved) is reported in a KeyErrors and the
// other keys are deleted all the same. Delete is idempotent: retry it on
// error.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) (err error) {
	if c.closed.Load() {
		return ErrClosed
	}
	keys, bad := validKeys(keys)
	if bad != nil {
		defer func() { err = withKeyErrors(err, bad) }()
	}
	if len(keys) == 0 {
		return nil
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.delete")
	defer func() { endSpan(span, err) }()
	defer c.detach(keys)
	if c.l2 != nil {
		if len(keys) == 1 {
			// One key: DEL and its invalidation in one round trip.
			rctx, cancel := c.remoteCtx(ctx)
			carried, err, pubErr := c.carryDelete(rctx, keys[0])
			cancel()
			if carried {
				c.invalidateLocal(keys...)
				if err != nil {
					return c.remoteErr("DEL", keys[0], err)
				}
				return c.publishErr(1, pubErr)
			}
		}
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
	if c.sub != nil {
		err = c.sub.Publish(rctx, keys)
	} else {
		err = c.cfg.bus.Publish(rctx, c.name, keys)
	}
	return c.publishErr(len(keys), err)
}

// publishErr wraps a failed publish of n keys.
func (c *Cache[V]) publishErr(n int, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %d keys of cache %q: %w", ErrInvalidation, n, c.name, err)
	}
	return nil
}

// localTTL returns the L1 TTL of an entry whose L2 copy expires at
// expiresAt (zero: none), as fillL1 computes it.
func (c *Cache[V]) localTTL(expiresAt time.Time) time.Duration {
	ttl := c.cfg.localTTL
	if !expiresAt.IsZero() {
		ttl = min(ttl, expiresAt.Sub(c.cfg.clock.Now()))
	}
	return ttl
}
