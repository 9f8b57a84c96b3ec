package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// The L2 funnel (issue 18): every call the cache makes to L2, single-key or
// batch, of the basic Remote or of an optional capability, goes through
// run, which applies the cross-cutting concerns once, in one order: the
// breaker of the shard the call goes to (a refusal is ErrCircuitOpen and
// sends nothing), then a child span and a duration measurement named after
// the operation, then the store. The basic methods reach it through
// funneledRemote (c.l2); batch capabilities through perShard, one call per
// shard; tag and carried calls call run directly.

// funnel holds what run needs: the telemetry, and the breakers with the
// store's shard map.
type funnel struct {
	remote  driver.Remote // the store itself, for calls made inside run
	t       *telemetry
	set     *breakers      // nil: breakers off
	sharder driver.Sharder // nil: one shard
}

// breakerOf returns the breaker of key's shard, nil when breakers are off.
func (f *funnel) breakerOf(key string) *breaker {
	switch {
	case f.set == nil:
		return nil
	case f.sharder == nil:
		return f.set.single
	}
	return f.set.of(f.sharder.Shard(key))
}

// byShard groups the indexes of keys by the breaker of their shard, in
// first-seen order; with breakers off, all keys are one group with a nil
// breaker.
func (f *funnel) byShard(keys []string) (bs []*breaker, idx [][]int) {
	if f.set == nil {
		all := make([]int, len(keys))
		for i := range all {
			all[i] = i
		}
		return []*breaker{nil}, [][]int{all}
	}
	for i, k := range keys {
		b := f.breakerOf(k)
		j := slices.Index(bs, b)
		if j < 0 {
			bs, idx = append(bs, b), append(idx, nil)
			j = len(bs) - 1
		}
		idx[j] = append(idx[j], i)
	}
	return bs, idx
}

// spansShards reports whether keys lie on more than one shard.
func (f *funnel) spansShards(keys []string) bool {
	if f.sharder == nil || len(keys) < 2 {
		return false
	}
	first := f.sharder.Shard(keys[0])
	for _, k := range keys[1:] {
		if f.sharder.Shard(k) != first {
			return true
		}
	}
	return false
}

// run is the funnel: call, as operation op, behind breaker b (nil: none),
// measured.
func run[T any](ctx context.Context, f *funnel, op string, b *breaker, call func(ctx context.Context) (T, error)) (T, error) {
	if b == nil {
		return measure(ctx, f.t, op, call)
	}
	t, ok := b.allow()
	if !ok {
		var zero T
		if b.shard == "" {
			return zero, ErrCircuitOpen
		}
		return zero, fmt.Errorf("%w (shard %s)", ErrCircuitOpen, b.shard)
	}
	v, err := measure(ctx, f.t, op, call)
	b.record(t, classify(ctx, err), err)
	return v, err
}

// measure runs call in a child span named after op and records its
// duration.
func measure[T any](ctx context.Context, t *telemetry, op string, call func(ctx context.Context) (T, error)) (T, error) {
	start := time.Now()
	name, ok := remoteSpanNames[op]
	if !ok {
		name = "tiercache.l2." + op
	}
	ctx, span := t.startSpan(ctx, name)
	v, err := call(ctx)
	t.remoteTime.Record(ctx, time.Since(start).Seconds(), t.remoteOp(op))
	endSpan(span, err)
	return v, err
}

// funneledRemote is the L2 store as the cache calls it: every method
// through the funnel.
type funneledRemote struct {
	driver.Remote
	f *funnel
}

func (r funneledRemote) Get(ctx context.Context, key string) (driver.Entry, error) {
	return run(ctx, r.f, "get", r.f.breakerOf(key), func(ctx context.Context) (driver.Entry, error) { return r.Remote.Get(ctx, key) })
}

// GetMany reads the keys of each shard in one call behind that shard's
// breaker, the shards at once (one round trip, as one pipeline over the
// Cluster would take); it fails if any shard's call fails.
func (r funneledRemote) GetMany(ctx context.Context, keys []string) ([]driver.Entry, error) {
	bs, idx := r.f.byShard(keys)
	if len(bs) <= 1 {
		var b *breaker
		if len(bs) == 1 {
			b = bs[0]
		}
		return run(ctx, r.f, "get_many", b, func(ctx context.Context) ([]driver.Entry, error) { return r.getMany(ctx, keys) })
	}
	out := make([]driver.Entry, len(keys))
	errs := make([]error, len(bs))
	inParallel(len(bs), func(j int) {
		part := pick(keys, idx[j])
		es, err := run(ctx, r.f, "get_many", bs[j], func(ctx context.Context) ([]driver.Entry, error) { return r.getMany(ctx, part) })
		if err != nil {
			errs[j] = err
			return
		}
		for n, i := range idx[j] {
			out[i] = es[n]
		}
	})
	if err := firstErr(errs); err != nil {
		return nil, err
	}
	return out, nil
}

// getMany is the store's GetMany, which must answer one entry per key.
func (r funneledRemote) getMany(ctx context.Context, keys []string) ([]driver.Entry, error) {
	es, err := r.Remote.GetMany(ctx, keys)
	if err == nil && len(es) != len(keys) {
		err = fmt.Errorf("tiered: the L2 store answered GetMany of %d keys with %d entries", len(keys), len(es))
	}
	return es, err
}

func (r funneledRemote) Set(ctx context.Context, key string, e driver.Entry) error {
	_, err := run(ctx, r.f, "set", r.f.breakerOf(key), func(ctx context.Context) (struct{}, error) { return struct{}{}, r.Remote.Set(ctx, key, e) })
	return err
}

// Delete deletes the keys of each shard in one call behind that shard's
// breaker; every shard is tried, and the errors are joined.
func (r funneledRemote) Delete(ctx context.Context, keys ...string) error {
	bs, idx := r.f.byShard(keys)
	var errs []error
	for j, b := range bs {
		part := keys
		if len(bs) > 1 {
			part = pick(keys, idx[j])
		}
		_, err := run(ctx, r.f, "delete", b, func(ctx context.Context) (struct{}, error) { return struct{}{}, r.Remote.Delete(ctx, part...) })
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r funneledRemote) Acquire(ctx context.Context, key string, token uint64, expiresAt time.Time) (driver.Entry, bool, error) {
	var won bool
	e, err := run(ctx, r.f, "acquire", r.f.breakerOf(key), func(ctx context.Context) (driver.Entry, error) {
		e, w, err := r.Remote.Acquire(ctx, key, token, expiresAt)
		won = w
		return e, err
	})
	return e, won, err
}

func (r funneledRemote) CompareAndSwap(ctx context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	return run(ctx, r.f, "compare_and_swap", r.f.breakerOf(key), func(ctx context.Context) (bool, error) {
		return r.Remote.CompareAndSwap(ctx, key, version, e)
	})
}

func (r funneledRemote) CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error) {
	return run(ctx, r.f, "compare_and_delete", r.f.breakerOf(key), func(ctx context.Context) (bool, error) {
		return r.Remote.CompareAndDelete(ctx, key, version)
	})
}

// readPerShard reads full (full[i] is key i) with one GetMany per shard
// through the funnel; errs[i] is key i's error, so a failing shard costs
// only its own keys.
func (c *Cache[V]) readPerShard(ctx context.Context, full []string) (entries []driver.Entry, errs []error) {
	entries = make([]driver.Entry, len(full))
	errs = c.perShard(ctx, "get_many", full, func(ctx context.Context, idx []int) []error {
		part := pick(full, idx)
		es, err := c.funnel.remote.GetMany(ctx, part)
		if err == nil && len(es) != len(part) {
			err = fmt.Errorf("tiered: the L2 store answered GetMany of %d keys with %d entries", len(part), len(es))
		}
		perrs := make([]error, len(idx))
		for n, i := range idx {
			if err != nil {
				perrs[n] = err
			} else {
				entries[i] = es[n]
			}
		}
		return perrs
	})
	return entries, errs
}

func pick(keys []string, idx []int) []string {
	out := make([]string, len(idx))
	for n, i := range idx {
		out[n] = keys[i]
	}
	return out
}
