package tiered

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync/atomic"
	"time"
)

// Hot keys refreshed on invalidation (issue 22 item 3): a node that drops a
// key it served often lately reads the new entry from L2 right away, so
// that its next reader hits L1 instead of waiting on L2.

// hotBuckets is the number of hit counters; keys share them by hash, so a
// cold key that shares a hot key's counter may be reloaded too (one L2
// read, never a loader call).
const hotBuckets = 4096

// hotKeys counts L1 hits per key (by hash) in windows.
type hotKeys struct {
	seed      maphash.Seed
	threshold uint32
	window    atomic.Uint32 // the current window's number
	buckets   [hotBuckets]atomic.Uint64
}

// hit counts an L1 hit of key. A counter stops at the threshold, so that a
// very hot key costs only a load; no allocation, no lock.
func (h *hotKeys) hit(key string) {
	b := &h.buckets[maphash.String(h.seed, key)%hotBuckets]
	w := uint64(h.window.Load())
	for {
		old := b.Load()
		next := w<<32 | 1
		if old>>32 == w {
			if uint32(old) >= h.threshold {
				return
			}
			next = old + 1
		}
		if b.CompareAndSwap(old, next) {
			return
		}
	}
}

// hot reports whether key had at least threshold L1 hits in the current
// window or the one before.
func (h *hotKeys) hot(key string) bool {
	b := h.buckets[maphash.String(h.seed, key)%hotBuckets].Load()
	w := h.window.Load()
	bw := uint32(b >> 32)
	return (bw == w || bw+1 == w) && uint32(b) >= h.threshold
}

// WithHotKeyRefresh makes a node reload from L2, right after an
// invalidation dropped it from L1, a key it served from L1 at least
// threshold times in the last window (or the one before it), so that the
// next reader of a hot key hits L1. A reload is one L2 read per
// invalidation message for the hot keys it names, in the background; it
// never calls a loader (a key L2 does not hold stays out of L1). Hits are
// counted in 4096 counters shared by hash, so a key sharing a hot key's
// counter may be reloaded too. It needs an L1 and an invalidation bus.
// Default: off. threshold and window must be positive.
func WithHotKeyRefresh(threshold int, window time.Duration) Option {
	return func(c *config) error {
		if threshold <= 0 || threshold > 1<<30 || window <= 0 {
			return fmt.Errorf("%w: hot-key refresh threshold %d and window %v must be positive", ErrInvalidOption, threshold, window)
		}
		c.hotThreshold, c.hotWindow = threshold, window
		return nil
	}
}

// startHotKeys sets up hit counting and the goroutine that starts a new
// window every hotWindow, stopped by Close.
func (c *Cache[V]) startHotKeys() {
	c.hot = &hotKeys{seed: maphash.MakeSeed(), threshold: uint32(c.cfg.hotThreshold)}
	c.hot.window.Store(1)
	tick := c.cfg.clock.NewTicker(c.cfg.hotWindow)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer tick.Stop()
		for {
			select {
			case <-c.closing.Done():
				return
			case <-tick.C():
				c.hot.window.Add(1)
			}
		}
	}()
}

// reloadHot reads the hot keys among keys, just dropped from L1 by an
// invalidation, from L2 and fills L1 with what it holds, in the
// background. The generation is taken after the drop, so a later
// invalidation still wins over the reload.
func (c *Cache[V]) reloadHot(keys []string) {
	if c.hot == nil || c.l2 == nil {
		return
	}
	var hot []string
	for _, k := range keys {
		if !strings.HasPrefix(k, tagKind) && c.hot.hot(k) {
			hot = append(hot, k)
		}
	}
	if len(hot) == 0 {
		return
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	gens := make([]uint64, len(hot))
	full := make([]string, len(hot))
	for i, k := range hot {
		gens[i], full[i] = c.generation(k), c.prefix+k
	}
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop := context.AfterFunc(c.closing, cancel)
		defer stop()
		rctx, rcancel := c.remoteCtx(ctx)
		entries, errs := c.readPerShard(rctx, full)
		rcancel()
		for i, e := range entries {
			if errs[i] != nil {
				c.report(ctx, c.remoteErr("hot-key reload", hot[i], errs[i]))
				continue
			}
			if !e.Kind.IsValue() {
				continue // a miss or a lease: the next reader loads as usual
			}
			if _, err := c.accept(ctx, hot[i], e, gens[i]); err == nil || errors.Is(err, ErrNotFound) {
				c.stats.hotReloads.Add(1)
			}
		}
	}()
}
