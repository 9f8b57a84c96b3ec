package tiered

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
)

// GetOrLoadMany returns the values of keys, loading those no tier holds with
// one call of load for the keys this node won the lease of. Keys another
// flight on this node or another node is loading are awaited, not loaded
// twice. Absent keys (cached not-found, or omitted by load) are missing from
// the map and are not errors. Keys that failed are reported in a KeyErrors;
// the map still holds every key that succeeded. An invalid key (empty,
// reserved) is one of them: the other keys are read and loaded all the
// same.
func (c *Cache[V]) GetOrLoadMany(ctx context.Context, keys []string, load BatchLoader[V]) (map[string]V, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if load == nil {
		return nil, fmt.Errorf("%w: nil batch loader", ErrInvalidOption)
	}
	keys, bad := validKeys(keys)
	out, err := c.getOrLoadMany(ctx, keys, load)
	return out, withKeyErrors(err, bad)
}

func (c *Cache[V]) getOrLoadMany(ctx context.Context, keys []string, load BatchLoader[V]) (map[string]V, error) {
	out, pending := c.splitL1(keys)
	if len(pending) == 0 {
		return out, nil
	}
	c.stats.l1Miss.Add(uint64(len(pending)))
	ctx, span := c.tel.startSpan(ctx, "tiercache.get_many")
	flights, mine, err := c.joinMany(pending)
	if err != nil {
		endSpan(span, err)
		return nil, err
	}
	if len(mine) > 0 {
		fctx, done := c.flightCtx(ctx)
		go func() {
			defer c.wg.Done()
			defer done()
			keys := make([]string, len(mine))
			for i, j := range mine {
				keys[i] = pending[j]
			}
			results := c.fetchKeys(fctx, keys, loadCall[V]{many: load}, nil)
			for i, j := range mine {
				c.finish(pending[j], flights[j], results[i].value, results[i].err)
			}
		}()
	}
	soft := c.softTimer()
	defer soft.stop()
	errs := KeyErrors{}
	for i, f := range flights {
		v, err := c.awaitFlight(ctx, pending[i], f, soft)
		switch {
		case err == nil:
			out[pending[i]] = v
		case !errors.Is(err, ErrNotFound):
			errs[pending[i]] = err
		}
	}
	if len(errs) > 0 {
		endSpan(span, errs)
		return out, errs
	}
	endSpan(span, nil)
	return out, nil
}

// splitL1 answers the keys L1 holds (a cached not-found is absent from
// out) and returns the others, each once, in order.
func (c *Cache[V]) splitL1(keys []string) (out map[string]V, rest []string) {
	out = make(map[string]V, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if v, found, err := c.lookL1(k); found {
			if err == nil {
				out[k] = v
			}
			continue
		}
		rest = append(rest, k)
	}
	return out, rest
}

// joinMany joins or creates the flights of keys. mine lists the indexes of
// the flights created: the caller leads them all in one goroutine (one
// wg.Add for all of them).
func (c *Cache[V]) joinMany(keys []string) (flights []*flight[V], mine []int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, nil, ErrClosed
	}
	flights = make([]*flight[V], len(keys))
	for i, k := range keys {
		if f := c.flights[k]; f != nil {
			flights[i] = f
			continue
		}
		f := &flight[V]{done: make(chan struct{})}
		c.flights[k] = f
		flights[i] = f
		mine = append(mine, i)
	}
	if len(mine) > 0 {
		c.wg.Add(1)
	}
	return flights, mine, nil
}

type result[V any] struct {
	value V
	err   error
}

// maxInFlight bounds the L2 round trips a batch keeps in flight at once
// (below go-redis's default pool of 10 connections per CPU).
const maxInFlight = 16

// inParallel calls f(0) ... f(n-1) from up to maxInFlight goroutines and
// returns when all calls have.
func inParallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, maxInFlight) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// oneOf loads key alone with a batch loader.
func (c *Cache[V]) oneOf(key string, load BatchLoader[V]) func(context.Context) (V, error) {
	return func(ctx context.Context) (V, error) {
		m, err := c.callBatch(ctx, []string{key}, load)
		return batchResult(m, err, key)
	}
}

// batchResult is key's share of a batch load: the batch error, its value, or
// ErrNotFound when the loader omitted it.
func batchResult[V any](m map[string]V, err error, key string) (V, error) {
	if err != nil {
		var zero V
		return zero, err
	}
	v, ok := m[key]
	if !ok {
		return v, ErrNotFound
	}
	return v, nil
}

// callBatch runs a batch loader (see runLoad).
func (c *Cache[V]) callBatch(ctx context.Context, keys []string, load BatchLoader[V]) (map[string]V, error) {
	ctx, sc := withScope(ctx, keys)
	g := c.beforeLoad(ctx)
	m, err := runLoad(c, ctx, strconv.Itoa(len(keys))+" keys", func(ctx context.Context) (map[string]V, error) { return load(ctx, keys) })
	if err == nil {
		err = c.afterLoad(ctx, sc, g)
	}
	return m, sc.result(err)
}
