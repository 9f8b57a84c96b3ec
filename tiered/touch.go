package tiered

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Touch and sliding TTL (issue 22): extend entries' lives without
// reloading or rewriting their values.

// Touch extends the L2 life of each key's entry to a full RemoteTTL
// (jittered) from now, NotFoundTTL for a cached not-found, and this node's
// L1 copy to match, without reloading or re-encoding the value: it reads
// the entries (one pipelined read per shard) and writes each back with its
// new expiry by a compare-and-swap on its version, so a Set, Delete or fill
// that lands in between wins and is never undone. Keys with no entry, or
// holding a lease, are left alone. Other nodes' L1 copies keep their own
// (short) lives and read the extended entry when they end. An invalid key
// is reported in a KeyErrors and the others are touched all the same; an
// L2 failure of a key is reported the same way. Without an L2, Touch only
// refreshes L1 copies.
func (c *Cache[V]) Touch(ctx context.Context, keys ...string) (err error) {
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
	ctx, span := c.tel.startSpan(ctx, "tiercache.touch")
	defer func() { endSpan(span, err) }()
	errs := c.touch(ctx, keys)
	kerrs := KeyErrors{}
	for i, err := range errs {
		if err != nil {
			kerrs[keys[i]] = err
		}
	}
	if len(kerrs) > 0 {
		return kerrs
	}
	return nil
}

// touch is Touch for valid keys; errs[i] is keys[i]'s error.
func (c *Cache[V]) touch(ctx context.Context, keys []string) (errs []error) {
	errs = make([]error, len(keys))
	gens := make([]uint64, len(keys))
	for i, k := range keys {
		gens[i] = c.generation(k)
	}
	if c.l2 == nil {
		for i, k := range keys {
			c.touchLocal(k, gens[i], c.cfg.clock.Now().Add(c.cfg.localTTL))
		}
		return errs
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = c.prefix + k
	}
	rctx, cancel := c.remoteCtx(ctx)
	entries, rerrs := c.readPerShard(rctx, full)
	cancel()
	var idx []int // the keys with a value or not-found to extend
	now := c.cfg.clock.Now()
	for i := range entries {
		if rerrs[i] != nil {
			// Only the keys of a failing shard: the others are touched.
			errs[i] = c.remoteErr("GET", keys[i], rerrs[i])
			continue
		}
		e := &entries[i]
		switch e.Kind {
		case driver.KindValue, driver.KindTagged:
			e.ExpiresAt = now.Add(c.jittered(c.cfg.remoteTTL))
		case driver.KindNotFound:
			e.ExpiresAt = now.Add(c.jittered(c.cfg.notFoundTTL))
		default:
			continue
		}
		idx = append(idx, i)
	}
	swapped := make([]bool, len(idx))
	if c.l2lease != nil && len(idx) > 1 {
		sub, vers, es := make([]string, len(idx)), make([]uint64, len(idx)), make([]driver.Entry, len(idx))
		for n, i := range idx {
			sub[n], vers[n], es[n] = full[i], entries[i].Version, entries[i]
		}
		rctx, cancel := c.remoteCtx(ctx)
		var perrs []error
		swapped, perrs = c.compareAndSwapMany(rctx, c.l2lease, "touch", sub, vers, es)
		cancel()
		for n, i := range idx {
			if perrs[n] != nil {
				errs[i] = c.remoteErr("touch", keys[i], perrs[n])
			}
		}
	} else {
		inParallel(len(idx), func(n int) {
			i := idx[n]
			rctx, cancel := c.remoteCtx(ctx)
			ok, err := c.l2.CompareAndSwap(rctx, full[i], entries[i].Version, entries[i])
			cancel()
			swapped[n] = ok
			if err != nil {
				errs[i] = c.remoteErr("touch", keys[i], err)
			}
		})
	}
	for n, i := range idx {
		if !swapped[n] {
			continue // changed meanwhile: the change wins
		}
		c.stats.touches.Add(1)
		c.touchLocal(keys[i], gens[i], c.localExpiry(entries[i]))
	}
	return errs
}

// touchLocal gives key's L1 copy, if any, the life of an entry expiring at
// expiresAt, if key's generation is still gen.
func (c *Cache[V]) touchLocal(key string, gen uint64, expiresAt time.Time) {
	if c.l1 == nil {
		return
	}
	v, absent, ok := c.l1.Get(key)
	if !ok {
		return
	}
	c.fillL1(key, v, absent, expiresAt, gen)
}

// maybeSlide extends, in the background, the life of an entry read from L2
// when WithSlidingTTL is on and the entry was last extended (or written)
// more than the slide interval ago, so that a key read keeps living and a
// hot key is written at most once per interval by each node.
func (c *Cache[V]) maybeSlide(ctx context.Context, key string, e driver.Entry) {
	if c.cfg.slideEvery <= 0 || e.ExpiresAt.IsZero() {
		return
	}
	ttl := c.cfg.remoteTTL
	if e.Kind == driver.KindNotFound {
		ttl = c.cfg.notFoundTTL
	}
	// An entry written or extended less than slideEvery ago has at least
	// its TTL (at its lowest jitter) less slideEvery left.
	low := time.Duration(float64(ttl) * (1 - c.cfg.jitter))
	if e.ExpiresAt.Sub(c.cfg.clock.Now()) > low-c.cfg.slideEvery {
		return
	}
	c.mu.Lock()
	if _, busy := c.touching[key]; busy || c.closed.Load() {
		c.mu.Unlock()
		return
	}
	c.touching[key] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	tctx, done := c.flightCtx(ctx)
	go func() {
		defer c.wg.Done()
		defer done()
		defer func() {
			c.mu.Lock()
			delete(c.touching, key)
			c.mu.Unlock()
		}()
		if errs := c.touch(tctx, []string{key}); errs[0] != nil {
			c.report(tctx, errs[0])
		}
	}()
}

// WithSlidingTTL makes reads slide the L2 TTL: a read that finds a value (or
// a cached not-found) in L2 written or extended more than every ago extends
// it to a full RemoteTTL (NotFoundTTL) in the background, as Touch does.
// Each node extends a key at most once per every, however hot; reads served
// by L1 do not reach L2, so a key read only from L1 slides once its L1 copy
// ends (LocalTTL). Default: off. every must be positive and shorter than
// RemoteTTL.
func WithSlidingTTL(every time.Duration) Option {
	return func(c *config) error {
		if every <= 0 {
			return fmt.Errorf("%w: sliding TTL interval %v must be positive", ErrInvalidOption, every)
		}
		c.slideEvery = every
		return nil
	}
}
