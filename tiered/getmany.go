package tiered

import (
	"context"
	"errors"
)

// GetMany returns the values of keys from L1 or L2 without loading them:
// L1 for every key, then one L2 read of the rest (one pipelined call per
// shard), each value found kept in L1 as Get does. Keys no tier holds,
// cached not-founds included, are missing from the map and are not errors.
// An invalid key (empty, reserved) is reported in a KeyErrors and the
// others are read all the same; when L2 fails, the keys it should have
// answered are reported in the KeyErrors and the map holds what L1 had.
func (c *Cache[V]) GetMany(ctx context.Context, keys ...string) (out map[string]V, err error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	keys, bad := validKeys(keys)
	if bad != nil {
		defer func() { err = withKeyErrors(err, bad) }()
	}
	out, rest := c.splitL1(keys)
	c.stats.l1Miss.Add(uint64(len(rest)))
	if len(rest) == 0 || c.l2 == nil {
		return out, nil
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.get_many")
	defer func() { endSpan(span, err) }()
	gens := make([]uint64, len(rest))
	full := make([]string, len(rest))
	for i, k := range rest {
		gens[i], full[i] = c.generation(k), c.prefix+k
	}
	rctx, cancel := c.remoteCtx(ctx)
	entries, rerrs := c.readPerShard(rctx, full)
	cancel()
	ctx = c.prefetchTagGens(ctx, rest, entries)
	errs := KeyErrors{}
	for i, k := range rest {
		if rerrs[i] != nil {
			// Only the keys of a failing shard: the others are answered.
			errs[k] = c.remoteErr("GET", k, rerrs[i])
			continue
		}
		v, err := c.accept(ctx, k, entries[i], gens[i])
		switch {
		case err == nil:
			out[k] = v
		case errors.Is(err, errUnusable), errors.Is(err, ErrNotFound):
		default:
			errs[k] = err
		}
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}
