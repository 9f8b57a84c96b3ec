package tiered

import (
	"context"
	"errors"

	"github.com/tiercache/tiercache/tiered/driver"
)

// SetMany writes items through both tiers as Set does for one key, with one
// pipelined L2 write for the batch (the L2 store groups it per slot, a
// round trip per Cluster node) and one invalidation published for the keys
// written, so that every other node drops its copies and no load in flight
// anywhere fills a value older than the batch (the writes replace its
// lease). Options (TTL, Tags) apply to every item.
//
// Keys that failed are reported in a KeyErrors (the other keys are written);
// L1 keeps none of them. A failed broadcast adds an error matching
// ErrInvalidation; retry the call, it is idempotent. An invalid key
// (empty, reserved) is reported in the KeyErrors and the other keys are
// written all the same; a closed cache or an invalid option fail the call
// before anything is written.
func (c *Cache[V]) SetMany(ctx context.Context, items map[string]V, opts ...WriteOption) (err error) {
	if c.closed.Load() {
		return ErrClosed
	}
	keys := make([]string, 0, len(items))
	bad := KeyErrors{}
	for k := range items {
		if err := checkKey(k); err != nil {
			bad[k] = err
			continue
		}
		keys = append(keys, k)
	}
	if len(bad) > 0 {
		defer func() { err = withKeyErrors(err, bad) }()
	}
	w, err := writeOptions(opts)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	ctx = writeCtx(ctx, w, keys...)
	ctx, span := c.tel.startSpan(ctx, "tiercache.set_many")
	defer func() { endSpan(span, err) }()
	if err := c.resolveWriteTags(ctx, w, keys); err != nil {
		c.detach(keys)
		return err
	}
	errs, perr := c.write(ctx, keys, func(i int) V { return items[keys[i]] }, w)
	kerrs := KeyErrors{}
	for i, err := range errs {
		if err != nil {
			kerrs[keys[i]] = err
		}
	}
	switch {
	case len(kerrs) > 0 && perr != nil:
		return errors.Join(kerrs, perr)
	case len(kerrs) > 0:
		return kerrs
	}
	return perr
}

// setManyRemote writes entries[i] under full[i] in L2 and returns an error
// per key: one pipelined batch if the store offers it, else one Set per key.
func (c *Cache[V]) setManyRemote(ctx context.Context, full []string, entries []driver.Entry) []error {
	if len(full) == 0 {
		return nil
	}
	if c.l2many == nil {
		errs := make([]error, len(full))
		inParallel(len(full), func(i int) {
			rctx, cancel := c.remoteCtx(ctx)
			c.fence(rctx, &entries[i])
			errs[i] = c.l2.Set(rctx, full[i], entries[i])
			cancel()
		})
		return errs
	}
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	for i := range entries {
		c.fence(rctx, &entries[i])
	}
	// One pipelined batch per shard, each behind its shard's breaker.
	return c.perShard(rctx, "set_many", full, func(ctx context.Context, idx []int) []error {
		keys, es := full, entries
		if len(idx) != len(full) {
			keys, es = make([]string, len(idx)), make([]driver.Entry, len(idx))
			for n, i := range idx {
				keys[n], es[n] = full[i], entries[i]
			}
		}
		return c.l2many.SetMany(ctx, keys, es)
	})
}

// firstErr returns the first error of errs that says the shard is
// unavailable (what the breaker counts), else the first error.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil && isUnavailable(err) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
