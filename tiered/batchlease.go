package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Batched leases: GetOrLoadMany takes the leases of its missing keys, and
// fills them, with one pipelined call each (DESIGN §6.1), when the L2 store
// offers the calls; otherwise, and for every key whose batched call failed,
// it falls back to the per-key calls.

// perShard calls call once per shard with the indexes of full on that
// shard, each behind its shard's breaker and measured as op, the shards at
// once; call returns one error per index it got (nil: that key succeeded).
// Keys of a shard whose breaker refuses the call get its error.
func (c *Cache[V]) perShard(ctx context.Context, op string, full []string, call func(ctx context.Context, idx []int) []error) []error {
	errs := make([]error, len(full))
	bs, idx := c.funnel.byShard(full)
	inParallel(len(bs), func(j int) {
		// A refusal by the breaker gives no per-key errors: every key of
		// the shard gets its error.
		perrs, err := run(ctx, c.funnel, op, bs[j], func(ctx context.Context) ([]error, error) {
			perrs := call(ctx, idx[j])
			if perrs != nil && len(perrs) != len(idx[j]) {
				err := fmt.Errorf("tiered: the L2 store answered %s of %d keys with %d results", op, len(idx[j]), len(perrs))
				perrs = make([]error, len(idx[j]))
				for i := range perrs {
					perrs[i] = err
				}
			}
			return perrs, firstErr(perrs)
		})
		for n, i := range idx[j] {
			switch {
			case perrs != nil:
				errs[i] = perrs[n]
			case err != nil:
				errs[i] = err
			}
		}
	})
	return errs
}

// readOrLeaseMany is readOrLease for a batch (full[i] is the i-th key): one
// call per shard (pipelined per node) when L2 offers AcquireMany, else one
// read-or-lease per key, a few in flight at once. Without leases it is one
// GetMany. err is set only when the batch read as a whole failed; a key's
// own failure is in its preRead.
func (c *Cache[V]) readOrLeaseMany(ctx context.Context, full []string) ([]preRead, error) {
	reads := make([]preRead, len(full))
	switch {
	case c.cfg.noLeases:
		rctx, cancel := c.remoteCtx(ctx)
		entries, err := c.l2.GetMany(rctx, full)
		cancel()
		if err != nil {
			return nil, err
		}
		for n := range reads {
			reads[n].e = entries[n]
		}
	case c.l2lease != nil:
		tokens, cur, won, errs := c.acquireMany(ctx, c.l2lease, full)
		for n := range reads {
			reads[n] = preRead{e: cur[n], err: errs[n], token: tokens[n], won: won[n]}
		}
	default:
		inParallel(len(full), func(n int) { reads[n] = c.readOrLease(ctx, full[n]) })
	}
	return reads, nil
}

// acquireMany reads full (keys[i] of the batch is full[i]) and takes the
// lease of each key found empty, with one pipelined SET NX GET per key. It
// returns, per key, the token offered, what the key holds when the lease
// was not won, whether it was won, and the error.
func (c *Cache[V]) acquireMany(ctx context.Context, lb driver.LeaseBatcher, full []string) (tokens []uint64, cur []driver.Entry, won []bool, errs []error) {
	n := len(full)
	tokens, cur, won = make([]uint64, n), make([]driver.Entry, n), make([]bool, n)
	for i := range tokens {
		tokens[i] = c.newToken() // carries the bus's address for woken waiters
	}
	expiresAt := c.cfg.clock.Now().Add(c.cfg.leaseTTL)
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	errs = c.perShard(rctx, "acquire_many", full, func(ctx context.Context, idx []int) []error {
		keys, ts := make([]string, len(idx)), make([]uint64, len(idx))
		for n, i := range idx {
			keys[n], ts[n] = full[i], tokens[i]
		}
		cs, ws, perrs := lb.AcquireMany(ctx, keys, ts, expiresAt)
		if len(cs) == len(idx) && len(ws) == len(idx) {
			for n, i := range idx {
				cur[i], won[i] = cs[n], ws[n]
			}
		}
		return perrs
	})
	return tokens, cur, won, errs
}

// fillMany stores the results of keys loaded under the leases tokens[i]
// (results[i] is keys[i]'s) with one pipelined conditional fill per shard,
// and the fills that landed in L1 with one batch fill. Keys whose result is
// not storable, or whose fill failed, go through storeLeased one by one
// (failure markers, lease release, retries). results is updated in place.
func (c *Cache[V]) fillMany(ctx context.Context, lb driver.LeaseBatcher, keys []string, tokens, gens []uint64, took time.Duration, results []result[V]) {
	var (
		batch   []int // indexes into keys
		full    []string
		entries []driver.Entry
		vers    []uint64
		single  []int
	)
	for i := range keys {
		v, kerr := results[i].value, results[i].err
		if kerr != nil && !errors.Is(kerr, ErrNotFound) {
			single = append(single, i)
			continue
		}
		e, storable := c.entryFor(ctx, keys[i], v, kerr, took)
		if !storable {
			single = append(single, i)
			continue
		}
		batch = append(batch, i)
		full = append(full, c.prefix+keys[i])
		entries = append(entries, e)
		vers = append(vers, tokens[i])
	}
	var landed []int // indexes into batch
	if len(batch) > 0 {
		rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
		swapped, errs := c.compareAndSwapMany(rctx, lb, "compare_and_swap_many", full, vers, entries)
		cancel()
		for j, i := range batch {
			switch {
			case errs[j] != nil:
				// The per-key path retries the fill and resolves the lease.
				single = append(single, i)
			case !swapped[j]:
				// A Delete or Set removed our lease while we loaded: what we
				// loaded may be stale. Callers get it; no tier stores it.
				c.stats.fillsRejected.Add(1)
			default:
				landed = append(landed, j)
			}
		}
	}
	c.fillLocalMany(len(landed), func(n int) (string, V, bool, time.Time, uint64) {
		j := landed[n]
		i := batch[j]
		return keys[i], results[i].value, entries[j].Kind == driver.KindNotFound, c.localExpiry(entries[j]), gens[i]
	})
	inParallel(len(single), func(n int) {
		i := single[n]
		v, kerr := c.storeLeased(ctx, keys[i], tokens[i], gens[i], results[i].value, results[i].err, took)
		results[i] = result[V]{v, kerr}
	})
}

// compareAndSwapMany replaces entries[i] under full[i] if it holds version
// vers[i], with one pipelined call per shard through the funnel, measured
// as op; swapped[i] and errs[i] are key i's outcome.
func (c *Cache[V]) compareAndSwapMany(ctx context.Context, lb driver.LeaseBatcher, op string, full []string, vers []uint64, entries []driver.Entry) (swapped []bool, errs []error) {
	swapped = make([]bool, len(full))
	errs = c.perShard(ctx, op, full, func(ctx context.Context, idx []int) []error {
		ks, vs, es := make([]string, len(idx)), make([]uint64, len(idx)), make([]driver.Entry, len(idx))
		for n, j := range idx {
			ks[n], vs[n], es[n] = full[j], vers[j], entries[j]
		}
		sw, perrs := lb.CompareAndSwapMany(ctx, ks, vs, es)
		if len(sw) == len(idx) {
			for n, j := range idx {
				swapped[j] = sw[n]
			}
		}
		return perrs
	})
	return swapped, errs
}

// fillLocalMany stores n entries in L1 as fillL1 does, with one batch fill
// when L1 offers it.
func (c *Cache[V]) fillLocalMany(n int, at func(i int) (key string, v V, absent bool, expiresAt time.Time, gen uint64)) {
	if c.l1 == nil || n == 0 {
		return
	}
	ttl := func(expiresAt time.Time) time.Duration {
		if expiresAt.IsZero() {
			return c.cfg.localTTL
		}
		return min(c.cfg.localTTL, expiresAt.Sub(c.cfg.clock.Now()))
	}
	mf, ok := c.l1.(driver.BatchFiller[V])
	if !ok {
		for i := range n {
			key, v, absent, exp, gen := at(i)
			c.l1.Fill(key, v, absent, ttl(exp), gen)
		}
		return
	}
	mf.FillMany(n, func(i int) (string, V, bool, time.Duration, uint64) {
		key, v, absent, exp, gen := at(i)
		return key, v, absent, ttl(exp), gen
	})
}
