package tiered

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
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
	out := make(map[string]V, len(keys))
	var pending []string
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
		pending = append(pending, k)
	}
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
			results := c.fetchMany(fctx, keys, load)
			for i, j := range mine {
				c.finish(pending[j], flights[j], results[i].value, results[i].err)
			}
		}()
	}
	errs := KeyErrors{}
	for i, f := range flights {
		v, err := wait(ctx, f)
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

// fetchMany is the shared work of a batch: L1 again, one L2 read for all
// keys, leases for the misses, one loader call for the keys won, and a
// single-key wait for keys other nodes hold the lease of.
func (c *Cache[V]) fetchMany(ctx context.Context, keys []string, load BatchLoader[V]) []result[V] {
	results := make([]result[V], len(keys))
	gens := make([]uint64, len(keys))
	var remain []int
	for i, k := range keys {
		if v, found, err := c.lookL1(k); found {
			results[i] = result[V]{v, err}
			continue
		}
		gens[i] = c.generation(k)
		remain = append(remain, i)
	}
	if len(remain) == 0 {
		return results
	}
	if c.l2 == nil {
		c.loadLocal(ctx, keys, remain, gens, results, load)
		return results
	}
	full := make([]string, len(remain))
	for i, j := range remain {
		full[i] = c.prefix + keys[j]
	}
	reads, err := c.readOrLeaseMany(ctx, full)
	if err != nil {
		c.report(ctx, c.remoteErr("MGET", keys[remain[0]], err))
		c.loadLocal(ctx, keys, remain, gens, results, load)
		return results
	}
	entries := make([]driver.Entry, len(reads))
	for n := range reads {
		entries[n] = reads[n].e
	}
	ctx = c.prefetchTagGens(ctx, pickKeys(keys, remain), entries)
	var (
		won      []int
		tokens   = make(map[int]uint64)
		degraded []int
		awaited  []int
		failed   []int // indexes into remain of failure markers
	)
	var hits []int // indexes into remain of the L2 hits, filled into L1 at once
	for n, i := range remain {
		r := reads[n]
		switch {
		case r.err != nil:
			c.report(ctx, c.remoteErr("lease", keys[i], r.err))
			degraded = append(degraded, i)
			continue
		case r.won:
			c.stats.l2Miss.Add(1)
			c.stats.leaseAcquired.Add(1)
			won = append(won, i)
			tokens[i] = r.token
			continue
		}
		e := r.e
		decode := c.decodeEntry
		if e.Kind == driver.KindTagged {
			decode = func(ctx context.Context, key string, e driver.Entry) (V, error) {
				return c.accept(ctx, key, e, gens[i]) // fills L1 itself
			}
		}
		if v, err := decode(ctx, keys[i], e); !errors.Is(err, errUnusable) {
			results[i] = result[V]{v, err}
			if e.Kind != driver.KindTagged {
				hits = append(hits, n)
			}
			if e.Kind == driver.KindValue {
				c.maybeRefresh(ctx, keys[i], e, c.oneOf(keys[i], load))
			}
			continue
		}
		if c.cfg.noLeases && e.Kind != driver.KindLease {
			c.stats.l2Miss.Add(1)
			won = append(won, i)
			continue
		}
		if e.Kind == driver.KindFailed && !c.cfg.noLeases {
			failed = append(failed, n) // an older load failed: load it again in this batch
			continue
		}
		// Another node's lease, or a corrupt value deleted: the single-key
		// path below waits for it, takes it over or takes the lease anew.
		awaited = append(awaited, i)
	}
	// The markers of failed loads: take their leases by compare-and-swap,
	// a few at once.
	taken := make([]struct {
		token uint64
		won   bool
		err   error
	}, len(failed))
	inParallel(len(failed), func(m int) {
		r := &taken[m]
		r.token, _, r.won, r.err = c.takeLease(ctx, full[failed[m]], entries[failed[m]])
	})
	for m, n := range failed {
		i, r := remain[n], taken[m]
		switch {
		case r.err != nil:
			c.report(ctx, c.remoteErr("lease", keys[i], r.err))
			degraded = append(degraded, i)
		case r.won:
			c.stats.l2Miss.Add(1)
			c.stats.leaseAcquired.Add(1)
			won = append(won, i)
			tokens[i] = r.token
		default:
			awaited = append(awaited, i) // the key changed: read it again alone
		}
	}
	c.fillLocalMany(len(hits), func(m int) (string, V, bool, time.Time, uint64) {
		n := hits[m]
		i := remain[n]
		return keys[i], results[i].value, entries[n].Kind == driver.KindNotFound, c.localExpiry(entries[n]), gens[i]
	})
	if len(won) > 0 {
		var resolved []func() // one per won key, called once its lease is resolved
		stop := noCancel
		if !c.cfg.noLeases {
			ts := make([]uint64, len(won))
			for j, i := range won {
				ts[j] = tokens[i]
			}
			stop = c.renewLeases(ctx, pickKeys(keys, won), ts)
			// A waking bus wakes other nodes' waiters on these leases once
			// each is resolved (below, after the fills), as for one key.
			for _, i := range won {
				resolved = append(resolved, c.holdLease(keys[i]))
			}
		}
		start := time.Now()
		m, err := c.callBatch(ctx, pickKeys(keys, won), load)
		took := time.Since(start)
		stop()
		if c.l2lease != nil && !c.cfg.noLeases {
			c.fillMany(ctx, c.l2lease, keys, won, tokens, gens, m, err, took, results)
		} else {
			inParallel(len(won), func(j int) {
				i := won[j]
				v, kerr := batchResult(m, err, keys[i])
				if c.cfg.noLeases {
					v, kerr = c.storeUnleased(ctx, keys[i], gens[i], v, kerr, took)
				} else {
					v, kerr = c.storeLeased(ctx, keys[i], tokens[i], gens[i], v, kerr, took)
				}
				results[i] = result[V]{v, kerr}
			})
		}
		for _, r := range resolved {
			r()
		}
	}
	if len(degraded) > 0 {
		c.loadLocal(ctx, keys, degraded, gens, results, load)
	}
	// Keys another node is loading: wait for each as a single-key read,
	// which takes the lease over (loading that key alone) if it vanishes.
	var wg sync.WaitGroup
	for _, i := range awaited {
		wg.Go(func() {
			v, err := c.fetchRemote(ctx, keys[i], gens[i], c.oneOf(keys[i], load))
			results[i] = result[V]{v, err}
		})
	}
	wg.Wait()
	return results
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

// loadLocal loads keys[idx] with one batch call and keeps the results in L1
// only: there is no L2, or it failed.
func (c *Cache[V]) loadLocal(ctx context.Context, keys []string, idx []int, gens []uint64, results []result[V], load BatchLoader[V]) {
	m, err := c.callBatch(ctx, pickKeys(keys, idx), load)
	for _, i := range idx {
		v, kerr := batchResult(m, err, keys[i])
		v, kerr = c.keepLocal(ctx, keys[i], v, kerr, gens[i])
		results[i] = result[V]{v, kerr}
	}
}

func pickKeys(keys []string, idx []int) []string {
	out := make([]string, len(idx))
	for n, i := range idx {
		out[n] = keys[i]
	}
	return out
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
