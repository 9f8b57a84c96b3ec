package tiered

import (
	"context"
	"fmt"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Conditional write (DESIGN §4): a caller that refreshes an entry in the
// background (the HTTP middleware replacing a stale response) reads the
// entry with its version, computes the replacement, and writes it only if
// the entry is still that version. A Delete or Set that landed meanwhile
// (a purge) wins: the replacement is dropped instead of undoing it.

// GetVersioned returns the value of key with the version of the write that
// stored it, for CompareAndSet. It reads L2 (the shared truth) and skips
// L1; without an L2 it reads L1, and the version is the key's L1
// generation. A miss (also a cached not-found or a lease) is ok == false
// with a nil error; an L2 failure is returned. Safe for concurrent use.
func (c *Cache[V]) GetVersioned(ctx context.Context, key string) (v V, version uint64, ok bool, err error) {
	if err := c.check(key); err != nil {
		return v, 0, false, err
	}
	if c.l2 == nil {
		// The generation first: a Set between the two reads then makes
		// the version older than the value, so CompareAndSet fails.
		gen := c.l1.Generation(key)
		v, absent, found := c.l1.Get(key)
		if !found || absent {
			return v, 0, false, nil
		}
		return v, gen, true, nil
	}
	gen := c.generation(key)
	rctx, cancel := c.remoteCtx(ctx)
	e, err := c.l2.Get(rctx, c.prefix+key)
	cancel()
	if err != nil {
		return v, 0, false, c.remoteErr("GET", key, err)
	}
	if e.Kind != driver.KindValue {
		return v, 0, false, nil
	}
	v, err = c.accept(ctx, key, e, gen)
	if err != nil {
		return v, 0, false, nil // undecodable: deleted by accept, a miss
	}
	return v, e.Version, true, nil
}

// CompareAndSet writes v under key, like Set, only if key still holds the
// write whose version GetVersioned returned, and reports whether it wrote.
// A Delete or Set of key since that read makes it return false, nil and
// change nothing. On success the local L1 holds v and the other nodes are
// told to drop their copies (a failed broadcast returns swapped true and
// an error matching ErrInvalidation, as Set does). An L2 failure is
// returned with swapped false.
//
// With an L2 the comparison is atomic in L2 (Remote.CompareAndSwap).
// Without one it is made against the key's L1 generation, which every Set,
// Delete and invalidation changes: those always win over a racing
// CompareAndSet, but two CompareAndSet calls with the same version may both
// succeed. Safe for concurrent use.
func (c *Cache[V]) CompareAndSet(ctx context.Context, key string, version uint64, v V) (swapped bool, err error) {
	if err := c.check(key); err != nil {
		return false, err
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.compare_and_set")
	defer func() { endSpan(span, err) }()
	defer c.detach([]string{key})
	if c.l2 == nil {
		if c.l1.Generation(key) != version {
			return false, nil
		}
		// Fill is atomic against Invalidate: a Delete racing with it
		// either prevents the write or removes it.
		return c.l1.Fill(key, v, false, c.cfg.localTTL, version), nil
	}
	e, _ := c.entryFor(ctx, key, v, nil, 0)
	if e.Kind != driver.KindValue {
		return false, fmt.Errorf("%w: encoding %q in cache %q", ErrCodec, key, c.name)
	}
	gen := c.generation(key) // before the L2 write, as in Set
	rctx, cancel := c.remoteCtx(ctx)
	swapped, err = c.l2.CompareAndSwap(rctx, c.prefix+key, version, e)
	cancel()
	if err != nil {
		return false, c.remoteErr("CAS", key, err)
	}
	if !swapped {
		c.stats.fillsRejected.Add(1)
		return false, nil
	}
	c.fillAfterWrite(key, gen, v, false, c.localExpiry(e))
	return true, c.publish(ctx, []string{key})
}
