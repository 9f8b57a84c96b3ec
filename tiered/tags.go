package tiered

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Tags on values (DESIGN §5): InvalidateTags makes every value carrying one
// of the tags a miss on every node, without an index that can drift.
//
//   - Each tag has a generation in L2 (a random number under
//     name + ":\x00tag:" + tag), and the cache a tag epoch (the generation of
//     the empty tag) bumped by every InvalidateTags before the tags'.
//   - A tagged value is stored in L2 as a KindTagged entry whose payload
//     starts with its tags and their generations at write time. An L2 read
//     of it checks the current generations (one MGET, for tagged entries
//     only; a batch reads them all at once) and treats a stale one as a
//     miss, deleting it.
//   - A load reads the tag epoch before calling the loader, creating it if
//     there is none, and again after reading the generations of the tags
//     the loader set; if it moved, an InvalidateTags ran meanwhile and what
//     was loaded may predate it: it goes to the callers and is stored
//     nowhere. Creating it first makes its absence afterwards a change too:
//     Redis may evict or expire the epoch at any time (maxmemory), and an
//     epoch absent before and after the load would hide an InvalidateTags
//     whose new epoch was evicted in between. L2-only caches, which hear no
//     bus, rely on this check alone.
//   - L1 holds values only, so each node keeps a local index tag -> keys of
//     the tagged entries it filled (entries are added before their
//     generations are checked, and forgotten after two LocalTTL periods,
//     when their L1 copies have expired). InvalidateTags publishes the tags
//     on the bus (as reserved keys "\x00tag:" + tag of the cache's
//     namespace); every node drops the L1 keys its index lists and bumps a
//     local tag epoch that makes loads running meanwhile not fill L1. A lost
//     message is a gap like any other: the bus flushes L1.

// Limits of tags.
const (
	// MaxTags is how many tags one value may carry.
	MaxTags = 32
	// MaxTagBytes is the longest tag, in bytes.
	MaxTagBytes = 256
)

var (
	// ErrInvalidTag is returned for an empty tag, a tag longer than
	// MaxTagBytes, or more than MaxTags tags on one value.
	ErrInvalidTag = errors.New("tiered: invalid tag")
	// ErrTagsUnsupported is returned when tags are used on a cache whose L2
	// store cannot keep tag generations (package remote's Store can).
	ErrTagsUnsupported = errors.New("tiered: the L2 store does not support tags")
)

// tagKind is the kind of the internal keys of tags: name + ":" + tagKind +
// tag in L2, tagKind + tag on the bus.
const tagKind = "\x00tag:"

func checkTags(tags []string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%w: %d tags, limit %d", ErrInvalidTag, len(tags), MaxTags)
	}
	for _, t := range tags {
		if t == "" || len(t) > MaxTagBytes {
			return fmt.Errorf("%w: %q must have 1 to %d bytes", ErrInvalidTag, t, MaxTagBytes)
		}
	}
	return nil
}

// addTags adds tags to have, without duplicates, within MaxTags.
func addTags(have, tags []string) ([]string, error) {
	for _, t := range tags {
		if !slices.Contains(have, t) {
			have = append(have, t)
		}
	}
	if len(have) > MaxTags {
		return have[:MaxTags], fmt.Errorf("%w: %d tags, limit %d", ErrInvalidTag, len(have), MaxTags)
	}
	return have, nil
}

// SetTags tags the value the loader call owning ctx returns (in a
// BatchLoader: every value of the call; SetKeyTags tags one). Tags add up
// over calls. InvalidateTags with any of them later makes the value a miss
// on every node. A not-found result carries no tags.
//
// It returns ErrInvalidTag for an empty or too long tag or more than MaxTags
// on one value, and ErrNotInLoader when ctx is not a loader's context;
// either error also fails the load. It is safe to call from goroutines the
// loader starts, until the loader returns.
//
// A tagged load costs one more L2 round trip on a standalone or Sentinel
// Redis (the tags' generations and then the tag epoch, in one pipeline),
// two on a Cluster, and every load of a cache that has seen tags one more
// (the tag epoch, read or created before the loader runs).
func SetTags(ctx context.Context, tags ...string) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return fmt.Errorf("%w: SetTags", ErrNotInLoader)
	}
	return sc.tag(sc.keys, tags)
}

// SetKeyTags is SetTags for one key of the call: in a BatchLoader, key must
// be one of the keys it was asked for (else ErrNotInLoader).
func SetKeyTags(ctx context.Context, key string, tags ...string) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return fmt.Errorf("%w: SetKeyTags", ErrNotInLoader)
	}
	if !sc.has(key) {
		return sc.fail(fmt.Errorf("%w: key %q is not loaded by this call", ErrNotInLoader, key))
	}
	return sc.tag([]string{key}, tags)
}

func (sc *loadScope) tag(keys, tags []string) error {
	if err := checkTags(tags); err != nil {
		return sc.fail(err)
	}
	sc.meta.mu.Lock()
	defer sc.meta.mu.Unlock()
	for _, k := range keys {
		km := sc.meta.key(k)
		var err error
		if km.tags, err = addTags(km.tags, tags); err != nil {
			return sc.fail(fmt.Errorf("key %q: %w", k, err))
		}
	}
	return nil
}

// Tags tags the values one Set or SetMany writes (see SetTags). The call
// returns ErrInvalidTag for an invalid tag and writes nothing.
func Tags(tags ...string) WriteOption {
	return func(w *writeConfig) error {
		if err := checkTags(tags); err != nil {
			return err
		}
		var err error
		w.tags, err = addTags(w.tags, tags)
		return err
	}
}

// States of a key's tags in its loadMeta.
const (
	tagsUnresolved uint8 = iota // generations not read, or an invalidation ran: store nowhere
	tagsResolved                // generations read and current: store in both tiers
	tagsLocalOnly               // L2 could not take them: L1 only (L1-only fallbacks)
)

// appendTagHeader appends the tag header of a KindTagged payload:
// uvarint count, then per tag uvarint length, the tag, 8-byte generation.
func appendTagHeader(dst []byte, tags []string, gens []uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(tags)))
	for i, t := range tags {
		dst = binary.AppendUvarint(dst, uint64(len(t)))
		dst = append(dst, t...)
		dst = binary.BigEndian.AppendUint64(dst, gens[i])
	}
	return dst
}

var errBadTagHeader = errors.New("tiered: bad tag header")

// parseTagHeader splits a KindTagged payload into its tags, their
// generations and the encoded value.
func parseTagHeader(b []byte) (tags []string, gens []uint64, payload []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > MaxTags {
		return nil, nil, nil, errBadTagHeader
	}
	b = b[w:]
	tags, gens = make([]string, n), make([]uint64, n)
	for i := range tags {
		l, w := binary.Uvarint(b)
		if w <= 0 || l == 0 || l > MaxTagBytes || uint64(len(b)-w) < l+8 {
			return nil, nil, nil, errBadTagHeader
		}
		b = b[w:]
		tags[i] = string(b[:l])
		gens[i] = binary.BigEndian.Uint64(b[l:])
		b = b[l+8:]
	}
	return tags, gens, b, nil
}

// tagEntry turns value entry e for key into a KindTagged one if the loader
// or write tagged it. ok is false when the value must not be stored in L2
// (its tags could not be checked against an invalidation).
func (c *Cache[V]) tagEntry(ctx context.Context, key string, e *driver.Entry) (ok bool) {
	km, found := keyMetaFrom(ctx, key)
	if !found || len(km.tags) == 0 {
		return true
	}
	if km.tagState != tagsResolved {
		return false
	}
	payload := appendTagHeader(make([]byte, 0, 16*len(km.tags)+len(e.Payload)), km.tags, km.gens)
	e.Kind, e.Payload = driver.KindTagged, append(payload, e.Payload...)
	return true
}

// tagsAllowL1 reports whether a load result for key may be kept in L1.
func tagsAllowL1(ctx context.Context, key string) bool {
	km, found := keyMetaFrom(ctx, key)
	return !found || len(km.tags) == 0 || km.tagState != tagsUnresolved
}

func (c *Cache[V]) tagKey(tag string) string { return c.prefix + tagKind + tag }

// epochKey is the L2 key of the cache's tag epoch (the empty tag).
func (c *Cache[V]) epochKey() string { return c.prefix + tagKind }

// tagCall runs one call of the L2 tag store on keys, measured, and behind
// the shard's breaker when the keys are on one shard (a call spanning shards
// is bounded by the remote timeout alone).
func (c *Cache[V]) tagCall(ctx context.Context, op string, keys []string, f func(ctx context.Context) error) error {
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	var b *breaker
	if bs, _ := c.funnel.byShard(keys); len(bs) == 1 {
		b = bs[0]
	}
	_, err := run(rctx, c.funnel, op, b, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

func (c *Cache[V]) generations(ctx context.Context, keys []string) (gens []uint64, err error) {
	err = c.tagCall(ctx, "tag_generations", keys, func(ctx context.Context) error {
		gens, err = c.l2tags.Generations(ctx, keys)
		if err == nil && len(gens) != len(keys) {
			err = fmt.Errorf("tiered: %d generations for %d keys", len(gens), len(keys))
		}
		return err
	})
	return gens, err
}

// resolveWriteTags prepares the tags of a Set or SetMany of keys: the keys go
// into the local index, the tags' generations into the write's meta.
func (c *Cache[V]) resolveWriteTags(ctx context.Context, w writeConfig, keys []string) error {
	if len(w.tags) == 0 {
		return nil
	}
	c.tagsSeen.Store(true)
	if c.l2 != nil && c.l2tags == nil {
		return fmt.Errorf("%w: cache %q", ErrTagsUnsupported, c.name)
	}
	for _, k := range keys {
		c.tagIndex.add(k, w.tags)
	}
	var gens []uint64
	if c.l2 != nil {
		ttl := w.ttl
		if ttl == 0 {
			ttl = c.cfg.remoteTTL
		}
		byTag, err := c.ensureGenerations(ctx, w.tags, c.genTTL(ttl))
		if err != nil {
			return c.remoteErr("tag generations", keys[0], err)
		}
		gens = make([]uint64, len(w.tags))
		for i, t := range w.tags {
			gens[i] = byTag[t]
		}
	}
	m, _ := ctx.Value(metaKey{}).(*loadMeta)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		km := m.key(k)
		km.tags, km.gens, km.tagState = w.tags, gens, tagsResolved
	}
	return nil
}

// tagGensKey is the context key of generations read ahead for a batch
// (map tag -> generation).
type tagGensKey struct{}

// prefetchTagGens reads, in one call, the current generations of every tag
// of the tagged entries among entries (read from L2 for keys), after
// recording the keys in the local index; acceptTagged then finds them in the
// returned context.
func (c *Cache[V]) prefetchTagGens(ctx context.Context, keys []string, entries []driver.Entry) context.Context {
	var tags []string
	for i, e := range entries {
		if e.Kind != driver.KindTagged {
			continue
		}
		et, _, _, err := parseTagHeader(e.Payload)
		if err != nil {
			continue // acceptTagged deals with it
		}
		c.tagIndex.add(keys[i], et)
		for _, t := range et {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	if len(tags) == 0 || c.l2tags == nil {
		return ctx
	}
	gkeys := make([]string, len(tags))
	for i, t := range tags {
		gkeys[i] = c.tagKey(t)
	}
	gens, err := c.generations(ctx, gkeys)
	if err != nil {
		return ctx // acceptTagged reads them again, and reports
	}
	m := make(map[string]uint64, len(tags))
	for i, t := range tags {
		m[t] = gens[i]
	}
	return context.WithValue(ctx, tagGensKey{}, m)
}

// acceptTagged is accept for a KindTagged entry: the value counts only if
// its tags still have the generations it was stored with; a stale entry is
// deleted (so that a lease can be taken) and is a miss.
func (c *Cache[V]) acceptTagged(ctx context.Context, key string, e driver.Entry, gen uint64) (v V, err error) {
	tags, gens, payload, perr := parseTagHeader(e.Payload)
	if perr != nil {
		e.Payload = nil // undecodable: accept deletes it
	} else {
		c.tagsSeen.Store(true)
		if c.l2tags == nil {
			return v, c.remoteErr("tag generations", key, ErrTagsUnsupported)
		}
		// Into the index before the check: an invalidation after the check
		// finds the key and beats the L1 fill.
		c.tagIndex.add(key, tags)
		cur, err := c.currentGens(ctx, tags)
		if err != nil {
			return v, c.remoteErr("tag generations", key, err)
		}
		if !slices.Equal(cur, gens) {
			rctx, cancel := c.remoteCtx(ctx)
			if _, err := c.l2.CompareAndDelete(rctx, c.prefix+key, e.Version); err != nil {
				c.report(ctx, c.remoteErr("DEL stale tagged", key, err))
			}
			cancel()
			return v, errUnusable
		}
		e.Payload = payload
	}
	e.Kind = driver.KindValue
	return c.accept(ctx, key, e, gen)
}

// currentGens returns the current generations of tags: read ahead for a
// batch, else from L2.
func (c *Cache[V]) currentGens(ctx context.Context, tags []string) ([]uint64, error) {
	if m, _ := ctx.Value(tagGensKey{}).(map[string]uint64); m != nil {
		out := make([]uint64, len(tags))
		all := true
		for i, t := range tags {
			g, ok := m[t]
			out[i], all = g, all && ok
		}
		if all {
			return out, nil
		}
	}
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = c.tagKey(t)
	}
	return c.generations(ctx, keys)
}

// InvalidateTags makes every value tagged with one of tags a miss on every
// node: it bumps the cache's tag epoch, then the tags' generations in L2
// (so every L2 entry recording an older one is stale), drops this node's
// L1 copies, and publishes the tags on the bus so that every other node
// drops its copies. Values being loaded meanwhile on any node are returned
// to their callers but not stored. It costs the same however many values
// carry the tags: nothing is scanned.
//
// An invalid tag (empty, too long) is reported in a KeyErrors, by tag,
// with ErrInvalidTag, and the other tags are invalidated all the same. It
// returns an L2 failure (retry: it is idempotent), or an error matching
// ErrInvalidation when the broadcast failed.
func (c *Cache[V]) InvalidateTags(ctx context.Context, tags ...string) (err error) {
	if c.closed.Load() {
		return ErrClosed
	}
	var bad KeyErrors
	valid := tags[:0:0]
	for _, t := range tags {
		if t == "" || len(t) > MaxTagBytes {
			if bad == nil {
				bad = KeyErrors{}
			}
			bad[t] = fmt.Errorf("%w: %q must have 1 to %d bytes", ErrInvalidTag, t, MaxTagBytes)
			continue
		}
		valid = append(valid, t)
	}
	tags = valid
	if bad != nil {
		defer func() { err = withKeyErrors(err, bad) }()
	}
	if len(tags) == 0 {
		return nil
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.invalidate_tags")
	defer func() { endSpan(span, err) }()
	defer c.detach(nil) // which keys carry the tags is not known here
	c.tagsSeen.Store(true)
	if c.l2 != nil {
		if c.l2tags == nil {
			return fmt.Errorf("%w: cache %q", ErrTagsUnsupported, c.name)
		}
		ttl := c.genTTL(c.cfg.remoteTTL)
		// The epoch first: a load that reads a tag's new generation then
		// sees a new epoch too, and stores nothing.
		if err := c.bump(ctx, []string{c.epochKey()}, ttl); err != nil {
			return c.remoteErr("tag epoch bump", tags[0], err)
		}
		keys := make([]string, len(tags))
		for i, t := range tags {
			keys[i] = c.tagKey(t)
		}
		if err := c.bump(ctx, keys, ttl); err != nil {
			return c.remoteErr("tag bump", tags[0], err)
		}
	}
	c.dropTags(tags)
	bus := make([]string, len(tags))
	for i, t := range tags {
		bus[i] = tagKind + t
	}
	return c.publish(ctx, bus)
}

func (c *Cache[V]) bump(ctx context.Context, keys []string, ttl time.Duration) error {
	return c.tagCall(ctx, "tag_bump", keys, func(ctx context.Context) error {
		return c.l2tags.BumpGenerations(ctx, keys, ttl)
	})
}

// dropTags drops this node's L1 copies of the values tagged with tags. The
// local tag epoch moves first, so a load that finished before the index
// lookup does not fill L1.
func (c *Cache[V]) dropTags(tags []string) {
	c.tagEpoch.Add(1)
	if c.l1 == nil {
		return
	}
	if keys := c.tagIndex.take(tags); len(keys) > 0 {
		c.l1.Invalidate(keys...)
	}
}

// onFlush is the cache's bus callback for lost messages: L1 is dropped,
// and no caller joins a flight that started before.
func (c *Cache[V]) onFlush() {
	c.l1.Flush()
	c.detach(nil)
}

// onInvalidate is the cache's bus callback: plain keys are dropped from L1,
// reserved tag keys drop the values with that tag.
func (c *Cache[V]) onInvalidate(keys []string) {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, tagKind) {
			n++
		}
	}
	if n == 0 {
		c.l1.Invalidate(keys...)
		c.detach(keys)
		c.reloadHot(keys)
		return
	}
	defer c.detach(nil)
	plain := make([]string, 0, len(keys)-n)
	tags := make([]string, 0, n)
	for _, k := range keys {
		if t, ok := strings.CutPrefix(k, tagKind); ok {
			tags = append(tags, t)
		} else {
			plain = append(plain, k)
		}
	}
	if len(plain) > 0 {
		c.l1.Invalidate(plain...)
		defer c.reloadHot(plain)
	}
	c.tagsSeen.Store(true)
	c.dropTags(tags)
}

// WithTags declares that the cache's values carry tags: from the first
// load, every load reads the cache's tag epoch (creating it if there is
// none) before calling its loader (one more L2 round trip per load), which lets the first tagged load on
// each node be stored. Without it a cache turns that on by itself when it
// first sees tags (a loader or write setting some, InvalidateTags, a tagged
// entry read or invalidated), and the tagged loads that ran on a node before
// it did are returned to their callers but not stored. Default: off.
func WithTags() Option {
	return func(c *config) error { c.tags = true; return nil }
}
