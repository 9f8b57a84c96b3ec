package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Per-key TTLs (DESIGN §5): a loader sets the TTL of what it returns on the
// context it is given, Set and SetMany take one per call.

// MaxTTL is the longest per-key TTL accepted (ten years).
const MaxTTL = 10 * 365 * 24 * time.Hour

var (
	// ErrInvalidTTL is returned for a per-key TTL that is not positive or
	// longer than MaxTTL.
	ErrInvalidTTL = errors.New("tiered: invalid TTL")
	// ErrNotInLoader is returned by SetTTL, SetKeyTTL and the tag setters
	// when ctx is not the context of a loader call of a Cache, or names a
	// key the call does not load.
	ErrNotInLoader = errors.New("tiered: not in a loader call")
)

func checkTTL(d time.Duration) error {
	if d <= 0 || d > MaxTTL {
		return fmt.Errorf("%w: %v must be positive and at most %v", ErrInvalidTTL, d, MaxTTL)
	}
	return nil
}

// SetTTL sets the L2 TTL (before jitter) of what the loader call owning ctx
// returns: its value, or its ErrNotFound (which is then cached for d even if
// negative caching is off). In a BatchLoader it applies to every key of the
// call (SetKeyTTL overrides it per key). The L1 copy still lives at most
// min(LocalTTL, remaining L2 TTL). A loader that does not call it gets the
// cache's RemoteTTL and NotFoundTTL.
//
// It returns ErrInvalidTTL for d <= 0 or d > MaxTTL and ErrNotInLoader when
// ctx is not a loader's context; either error also fails the load (the
// result is returned to no caller and cached nowhere), so a bad TTL is never
// ignored. It is safe to call from goroutines the loader starts, until the
// loader returns; the last call wins.
func SetTTL(ctx context.Context, d time.Duration) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return fmt.Errorf("%w: SetTTL", ErrNotInLoader)
	}
	if err := checkTTL(d); err != nil {
		return sc.fail(err)
	}
	sc.meta.mu.Lock()
	defer sc.meta.mu.Unlock()
	for _, k := range sc.keys {
		if km := sc.meta.key(k); !km.keyTTL {
			km.ttl = d
		}
	}
	return nil
}

// SetKeyTTL is SetTTL for one key of the call: in a BatchLoader, key must be
// one of the keys it was asked for (else ErrNotInLoader). It overrides
// SetTTL for that key whichever is called first.
func SetKeyTTL(ctx context.Context, key string, d time.Duration) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return fmt.Errorf("%w: SetKeyTTL", ErrNotInLoader)
	}
	if !sc.has(key) {
		return sc.fail(fmt.Errorf("%w: key %q is not loaded by this call", ErrNotInLoader, key))
	}
	if err := checkTTL(d); err != nil {
		return sc.fail(fmt.Errorf("key %q: %w", key, err))
	}
	sc.meta.mu.Lock()
	defer sc.meta.mu.Unlock()
	km := sc.meta.key(key)
	km.ttl, km.keyTTL = d, true
	return nil
}

// metaKey and scopeKey are the context keys of a flight's loadMeta and of
// one loader call's loadScope.
type (
	metaKey  struct{}
	scopeKey struct{}
)

// loadMeta is what the loader calls of one flight (or one write) said about
// the keys they returned. flightCtx puts a fresh one in every flight's
// context; entryFor and keepLocal read it.
type loadMeta struct {
	mu   sync.Mutex
	keys map[string]*keyMeta
}

// keyMeta is what a loader (or a write option) set for one key.
type keyMeta struct {
	ttl    time.Duration // 0: the cache's default
	keyTTL bool          // ttl came from SetKeyTTL: SetTTL leaves it alone

	tags     []string // SetTags, SetKeyTags, Tags
	gens     []uint64 // the tags' generations, once resolved
	tagState uint8    // tagsUnresolved, tagsResolved, tagsLocalOnly
}

// key returns key's settings, creating them. m.mu must be held.
func (m *loadMeta) key(key string) *keyMeta {
	if m.keys == nil {
		m.keys = make(map[string]*keyMeta)
	}
	km := m.keys[key]
	if km == nil {
		km = &keyMeta{}
		m.keys[key] = km
	}
	return km
}

// withMeta returns ctx with a fresh loadMeta.
func withMeta(ctx context.Context) context.Context {
	return context.WithValue(ctx, metaKey{}, &loadMeta{})
}

// keyMetaFrom returns a copy of what was set for key in ctx's flight; ok is
// false when nothing was.
func keyMetaFrom(ctx context.Context, key string) (km keyMeta, ok bool) {
	m, _ := ctx.Value(metaKey{}).(*loadMeta)
	if m == nil {
		return km, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.keys[key]
	if p == nil {
		return km, false
	}
	return *p, true
}

// loadScope is one loader call: the keys it loads and the first invalid use
// of the setters, which fails the call.
type loadScope struct {
	meta *loadMeta
	keys []string
	set  map[string]struct{} // keys as a set, built on first need (batches)

	mu  sync.Mutex
	err error
}

func scopeFrom(ctx context.Context) *loadScope {
	sc, _ := ctx.Value(scopeKey{}).(*loadScope)
	return sc
}

// withScope returns the context of a loader call for keys, inside the
// flight whose context is ctx.
func withScope(ctx context.Context, keys []string) (context.Context, *loadScope) {
	m, _ := ctx.Value(metaKey{}).(*loadMeta)
	if m == nil {
		// Every flight has one; a call outside a flight keeps its settings
		// to itself.
		m = &loadMeta{}
		ctx = context.WithValue(ctx, metaKey{}, m)
	}
	sc := &loadScope{meta: m, keys: keys}
	return context.WithValue(ctx, scopeKey{}, sc), sc
}

func (sc *loadScope) has(key string) bool {
	if len(sc.keys) <= 8 {
		for _, k := range sc.keys {
			if k == key {
				return true
			}
		}
		return false
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.set == nil {
		sc.set = make(map[string]struct{}, len(sc.keys))
		for _, k := range sc.keys {
			sc.set[k] = struct{}{}
		}
	}
	_, ok := sc.set[key]
	return ok
}

// fail records err as the call's failure (the first one wins) and returns it.
func (sc *loadScope) fail(err error) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.err == nil {
		sc.err = err
	}
	return err
}

// result is the call's error: a misuse of the setters overrides a success
// or a not-found.
func (sc *loadScope) result(err error) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.err != nil && (err == nil || errors.Is(err, ErrNotFound)) {
		return sc.err
	}
	return err
}

// ttlFor is the L2 TTL (before jitter) of a result for key: the loader's or
// write's, else the cache's default for a value or a not-found. store is
// false when the result must not be cached (a not-found with negative
// caching off and no TTL of its own).
func (c *Cache[V]) ttlFor(ctx context.Context, key string, notFound bool) (ttl time.Duration, store bool) {
	if km, ok := keyMetaFrom(ctx, key); ok && km.ttl > 0 {
		return km.ttl, true
	}
	if notFound {
		return c.cfg.notFoundTTL, c.cfg.notFoundTTL > 0
	}
	return c.cfg.remoteTTL, true
}

// WriteOption changes how one Set or SetMany call writes. Pass none for the
// cache's defaults.
type WriteOption func(*writeConfig) error

type writeConfig struct {
	ttl  time.Duration // 0: RemoteTTL
	tags []string
}

// TTL sets the L2 TTL (before jitter) of the values one Set or SetMany
// writes, instead of the cache's RemoteTTL; their L1 copies live at most
// min(LocalTTL, d). d must be positive and at most MaxTTL (else the call
// returns ErrInvalidTTL and writes nothing).
func TTL(d time.Duration) WriteOption {
	return func(w *writeConfig) error {
		if err := checkTTL(d); err != nil {
			return err
		}
		w.ttl = d
		return nil
	}
}

func writeOptions(opts []WriteOption) (w writeConfig, err error) {
	for _, o := range opts {
		if o == nil {
			return w, fmt.Errorf("%w: nil write option", ErrInvalidOption)
		}
		if err := o(&w); err != nil {
			return w, err
		}
	}
	return w, nil
}

// writeCtx returns ctx carrying w's settings for keys, where entryFor finds
// them as if a loader had set them (and hiding those of a loader whose
// context ctx may be).
func writeCtx(ctx context.Context, w writeConfig, keys ...string) context.Context {
	m := &loadMeta{keys: make(map[string]*keyMeta, len(keys))}
	for _, k := range keys {
		m.keys[k] = &keyMeta{ttl: w.ttl, keyTTL: true}
	}
	return context.WithValue(ctx, metaKey{}, m)
}
