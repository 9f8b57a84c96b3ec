package tiered

import (
	"context"
	"fmt"
	"time"
)

// The tag guard of loads (see tags.go): a load snapshots the tag epochs
// before its loader runs and stores what it loaded only if no
// InvalidateTags ran meanwhile.

// tagGuard is what a load snapshots before calling the loader, to tell
// afterwards whether an InvalidateTags ran meanwhile.
type tagGuard struct {
	local   uint64 // the node's tag epoch
	epoch   uint64 // the cache's tag epoch in L2
	epochOK bool   // epoch was read
}

// beforeLoad snapshots the tag epochs. It reads L2 only once the cache has
// seen tags (a loader set some, a write carried some, an InvalidateTags
// ran, or a tagged entry was read), so caches without tags pay nothing.
// The L2 epoch is created if there is none: afterLoad then reads it as a
// change whether an InvalidateTags moved it or Redis dropped it.
func (c *Cache[V]) beforeLoad(ctx context.Context) tagGuard {
	g := tagGuard{local: c.tagEpoch.Load()}
	if c.l2tags == nil || !c.tagsSeen.Load() {
		return g
	}
	key := c.epochKey()
	var epoch uint64
	err := c.tagCall(ctx, "tag_ensure", []string{key}, func(ctx context.Context) (err error) {
		epoch, err = c.l2tags.GetOrCreateGeneration(ctx, key, c.genTTL(c.cfg.remoteTTL))
		return err
	})
	if err != nil {
		c.report(ctx, c.remoteErr("tag epoch", c.name, err))
		return g
	}
	g.epoch, g.epochOK = epoch, true
	return g
}

// afterLoad resolves the tags the loader call sc set: it records the keys
// in the local index, then reads (creating them if need be) the tags'
// generations, then checks that no InvalidateTags ran since g: the L2
// epoch is still the one beforeLoad read or created (gone counts as
// moved). Keys whose check fails are stored nowhere. An error fails the
// call.
func (c *Cache[V]) afterLoad(ctx context.Context, sc *loadScope, g tagGuard) error {
	type tagged struct {
		key  string
		tags []string
		ttl  time.Duration
	}
	var list []tagged
	sc.meta.mu.Lock()
	for _, k := range sc.keys {
		if km := sc.meta.keys[k]; km != nil && len(km.tags) > 0 {
			list = append(list, tagged{key: k, tags: km.tags, ttl: km.ttl})
		}
	}
	sc.meta.mu.Unlock()
	if len(list) == 0 {
		return nil
	}
	c.tagsSeen.Store(true)
	if c.l2 != nil && c.l2tags == nil {
		return fmt.Errorf("%w: cache %q", ErrTagsUnsupported, c.name)
	}
	for _, t := range list {
		c.tagIndex.add(t.key, t.tags)
	}
	state := tagsResolved
	var byTag map[string]uint64
	switch {
	case c.tagEpoch.Load() != g.local:
		// A tag invalidation reached this node while the loader ran.
		state = tagsUnresolved
	case c.l2 == nil:
	case !g.epochOK:
		// The first tagged load of this node (or the epoch read failed):
		// nothing to compare against. Not in L2; in L1 only when L2 failed
		// (keepLocal).
		state = tagsLocalOnly
	default:
		var ttl time.Duration
		var tags []string
		for _, t := range list {
			if t.ttl == 0 {
				t.ttl = c.cfg.remoteTTL
			}
			ttl = max(ttl, t.ttl)
			tags, _ = addTags(tags, t.tags)
		}
		var epoch uint64
		var err error
		if byTag, epoch, err = c.ensureThenEpoch(ctx, tags, c.genTTL(ttl)); err != nil {
			c.report(ctx, c.remoteErr("tag generations", list[0].key, err))
			state = tagsLocalOnly
		} else if epoch != g.epoch {
			// Moved, or gone (0: evicted or expired since beforeLoad
			// created it), maybe with an invalidation's new epoch.
			state = tagsUnresolved
		}
	}
	sc.meta.mu.Lock()
	defer sc.meta.mu.Unlock()
	for _, t := range list {
		km := sc.meta.keys[t.key]
		km.tagState = state
		if byTag != nil {
			km.gens = make([]uint64, len(km.tags))
			for i, tag := range km.tags {
				km.gens[i] = byTag[tag]
			}
		}
	}
	return nil
}

// genTTL is how long a tag generation must live for an entry of L2 TTL ttl:
// beyond the entry's jittered expiry.
func (c *Cache[V]) genTTL(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl)*(1+c.cfg.jitter)) + time.Minute
}

// ensureGenerations returns the generations of tags by tag, creating them.
func (c *Cache[V]) ensureGenerations(ctx context.Context, tags []string, ttl time.Duration) (map[string]uint64, error) {
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = c.tagKey(t)
	}
	var gens []uint64
	err := c.tagCall(ctx, "tag_ensure", keys, func(ctx context.Context) (err error) {
		gens, err = c.l2tags.EnsureGenerations(ctx, keys, ttl)
		if err == nil && len(gens) != len(keys) {
			err = fmt.Errorf("tiered: %d generations for %d keys", len(gens), len(keys))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(tags))
	for i, t := range tags {
		out[t] = gens[i]
	}
	return out, nil
}

// ensureThenEpoch returns the generations of tags by tag, creating them,
// and then the tag epoch (0 if there is none): one round trip on a
// standalone Redis, two on a Cluster (where, with breakers on, each call
// goes behind its shards' breakers, as the calls of one shard do).
func (c *Cache[V]) ensureThenEpoch(ctx context.Context, tags []string, ttl time.Duration) (map[string]uint64, uint64, error) {
	keys := make([]string, len(tags), len(tags)+1)
	for i, t := range tags {
		keys[i] = c.tagKey(t)
	}
	epochKey := []string{c.epochKey()}
	all := append(keys, epochKey...)
	if c.funnel.spansShards(all) {
		byTag, err := c.ensureGenerations(ctx, tags, ttl)
		if err != nil {
			return nil, 0, err
		}
		epoch, err := c.generations(ctx, epochKey)
		if err != nil {
			return nil, 0, err
		}
		return byTag, epoch[0], nil
	}
	var gens, epoch []uint64
	err := c.tagCall(ctx, "tag_ensure", all, func(ctx context.Context) (err error) {
		gens, epoch, err = c.l2tags.EnsureGenerationsThen(ctx, keys, ttl, epochKey)
		if err == nil && (len(gens) != len(keys) || len(epoch) != 1) {
			err = fmt.Errorf("tiered: %d generations and %d epochs for %d keys", len(gens), len(epoch), len(keys))
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]uint64, len(tags))
	for i, t := range tags {
		out[t] = gens[i]
	}
	return out, epoch[0], nil
}
