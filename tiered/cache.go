package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Loader loads the value of one key from the source of truth (a database,
// a service). It returns ErrNotFound (possibly wrapped) for an absent row.
type Loader[V any] func(ctx context.Context, key string) (V, error)

// BatchLoader loads several keys in one call. Keys it omits from the map are
// absent (cached as not found); an error fails every key of the call.
type BatchLoader[V any] func(ctx context.Context, keys []string) (map[string]V, error)

// Cache is a two-tier cache of values of type V under one name (namespace).
// Create it with New; it is safe for concurrent use. Close it when done.
type Cache[V any] struct {
	name     string
	prefix   string // name + ":", prepended to keys in L2
	l1       driver.Local[V]
	l2       driver.Remote
	l2many   driver.BatchWriter  // l2's batch write, if it has one
	l2tags   driver.TagStore     // l2's tag generations, if it has them
	l2lease  driver.LeaseBatcher // l2's pipelined lease calls, if it has them
	cfg      config
	stats    counters
	tel      *telemetry
	breakers *breakers            // the per-shard circuit breakers; nil when off
	funnel   *funnel              // the one path of every L2 call (funnel.go); nil without an L2
	stale    driver.StaleLocal[V] // l1's stale reads, with WithStaleIfError; else nil
	loadSem  chan struct{}        // WithMaxConcurrentLoads slots; nil when unlimited

	// closing is cancelled by Close; flights derive their context from it.
	closing context.Context
	cancel  context.CancelFunc
	closed  atomic.Bool

	mu         sync.Mutex // guards flights, refreshing and wg.Add against Close
	flights    map[string]*flight[V]
	refreshing map[string]struct{} // keys this node is refreshing early
	touching   map[string]struct{} // keys this node is extending (WithSlidingTTL)
	hot        *hotKeys            // L1 hit counts (WithHotKeyRefresh); nil when off
	wg         sync.WaitGroup

	// sub is this cache's registration on the bus; nil when there is no
	// bus or no L1.
	sub driver.Subscription

	tagsSeen atomic.Bool   // tags were used: loads read the tag epoch first
	tagEpoch atomic.Uint64 // moved by every tag invalidation this node sees
	tagIndex tagIndex

	// busCarry and l2carry carry a Set's invalidation in the round trip of
	// its L2 write (write.go); nil when the bus or L2 cannot.
	busCarry driver.CarryingSubscription
	l2carry  driver.PublishCarrier
}

// flight is the shared work of one key on this node. done is closed when
// value and err are set. It is made (under Cache.mu) only when someone
// waits: a flight its leader ends inline (an L2 hit) needs no channel.
type flight[V any] struct {
	done  chan struct{}
	value V
	err   error
}

// New returns a cache named name (the namespace of its keys in L2 and on the
// bus: caches of different types must use different names). l1 or l2 may be
// nil (an L2-only or L1-only cache), not both. The cache owns l1 and closes
// it in Close; l2 and the bus are shared and left open.
func New[V any](name string, l1 driver.Local[V], l2 driver.Remote, opts ...Option) (*Cache[V], error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if l1 == nil && l2 == nil {
		return nil, fmt.Errorf("%w: no L1 and no L2 store", ErrInvalidOption)
	}
	cfg, stale, err := newConfig(l1, opts)
	if err != nil {
		return nil, err
	}
	if cfg.onError == nil {
		cfg.onError = logTo(cfg.logger, cfg.clock.Now)
	}
	c := &Cache[V]{
		name:       name,
		prefix:     name + ":",
		l1:         l1,
		l2:         l2,
		cfg:        cfg,
		stale:      stale,
		flights:    make(map[string]*flight[V]),
		refreshing: make(map[string]struct{}),
		touching:   make(map[string]struct{}),
	}
	c.tagIndex.period = cfg.localTTL + cfg.loadTimeout
	c.tagsSeen.Store(cfg.tags)
	if cfg.maxLoads > 0 {
		c.loadSem = make(chan struct{}, cfg.maxLoads)
	}
	tel, err := newTelemetry(c)
	if err != nil {
		return nil, err
	}
	c.tel = tel
	if l2 != nil {
		c.l2many, _ = l2.(driver.BatchWriter)
		c.l2tags, _ = l2.(driver.TagStore)
		c.l2lease, _ = l2.(driver.LeaseBatcher)
		c.funnel = &funnel{remote: l2, t: tel}
		c.funnel.sharder, _ = l2.(driver.Sharder)
		if cfg.breakerThreshold > 0 {
			c.breakers = newBreakers(cfg.breakerThreshold, cfg.breakerCoolDown, cfg.clock.Now, c.breakerOpened)
			c.funnel.set = c.breakers
		}
		c.l2 = funneledRemote{Remote: l2, f: c.funnel}
	}
	c.closing, c.cancel = context.WithCancel(context.Background())
	if cfg.hotThreshold > 0 {
		c.startHotKeys()
	}
	if cfg.bus != nil && l1 != nil {
		sub, err := cfg.bus.Subscribe(name, c.onInvalidate, c.onFlush)
		if err != nil {
			c.cancel()
			tel.close()
			return nil, fmt.Errorf("tiered: subscribing %q to the invalidation bus: %w", name, err)
		}
		c.sub = sub
		if cs, ok := sub.(driver.CarryingSubscription); ok {
			if pc, ok := l2.(driver.PublishCarrier); ok {
				c.busCarry, c.l2carry = cs, pc
			}
		}
	}
	return c, nil
}

// Name returns the cache's name.
func (c *Cache[V]) Name() string { return c.name }

// Close stops the cache: in-flight loads are cancelled and awaited, the bus
// subscription ends and L1 is closed. Later calls return ErrClosed. Close is
// idempotent and always returns nil.
//
// Close waits only for work that ends by itself soon after it is
// cancelled: each L2 call still in flight ends within the remote timeout
// (WithRemoteTimeout, given a client with ContextTimeoutEnabled), a lease
// resolution after it within two more, and a loader when it returns on its
// cancelled context. With the defaults and such a loader, Close returns
// within a few hundred milliseconds whatever Redis does (1-100 ms measured
// with Redis frozen and 16 goroutines calling; see docs/degradation.md). A
// loader that ignores its context holds Close until it returns; with
// WithRemoteTimeout(0), the client's own timeouts bound the L2 calls.
func (c *Cache[V]) Close() error {
	c.mu.Lock()
	already := c.closed.Swap(true)
	c.mu.Unlock()
	if already {
		return nil
	}
	c.cancel()
	c.wg.Wait()
	if c.sub != nil {
		c.sub.Unsubscribe()
	}
	if c.l1 != nil {
		c.l1.Close()
	}
	c.tel.close()
	return nil
}

func (c *Cache[V]) check(key string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return checkKey(key)
}

// checkKey reports whether key may be used: not empty, not reserved.
func checkKey(key string) error {
	if key == "" {
		return ErrEmptyKey
	}
	if key[0] == reservedKeyPrefix {
		return fmt.Errorf("%w: %q", ErrReservedKey, key)
	}
	return nil
}

// reservedKeyPrefix starts the L2 keys the cache writes for itself (refresh
// guards, tag generations): name + ":\x00" + kind + ":" + key. User keys
// must not begin with it.
const reservedKeyPrefix = '\x00'

// checkName validates a cache name: it must be non-empty and free of ':'
// (which separates the name from keys in L2, so "a:b" key "c" and "a" key
// "b:c" would collide), '{' and '}' (a hash tag would pin every key of the
// cache to one Cluster slot) and control characters.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidOption)
	}
	if i := strings.IndexAny(name, ":{}"); i >= 0 {
		why := "':' separates the name from the keys in L2, so names with it collide with other caches' keys"
		if name[i] != ':' {
			why = "'{' and '}' form a Redis Cluster hash tag that would pin every key of the cache to one slot"
		}
		return fmt.Errorf("%w: cache name %q: %s", ErrInvalidOption, name, why)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return fmt.Errorf("%w: cache name %q has control characters", ErrInvalidOption, name)
	}
	return nil
}

// report hands an error the cache handled itself to the error handler. A
// call refused by the open circuit breaker is not reported again: the
// opening was.
func (c *Cache[V]) report(ctx context.Context, err error) {
	if errors.Is(err, ErrCircuitOpen) {
		return
	}
	c.stats.handledErrors.Add(1)
	c.cfg.onError(ctx, err)
}

func (c *Cache[V]) remoteErr(op, key string, err error) error {
	c.stats.l2Error.Add(1)
	return fmt.Errorf("%w: %s %q in cache %q: %w", ErrRemote, op, key, c.name, err)
}

func noCancel() {}

// remoteCtx bounds one L2 call by the remote timeout, if there is one.
func (c *Cache[V]) remoteCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.cfg.remoteTimeout == 0 {
		return ctx, noCancel
	}
	return context.WithTimeoutCause(ctx, c.cfg.remoteTimeout, errRemoteTimeout)
}

// validKeys splits the keys of a batch call: the batch proceeds with the
// valid ones, and each invalid key is reported in bad (a KeyErrors),
// never failing the others (one bad key must not leave the rest of an
// invalidation undone). keys is returned as is when all are valid.
func validKeys(keys []string) (valid []string, bad KeyErrors) {
	for i, k := range keys {
		err := checkKey(k)
		if err == nil {
			if bad != nil {
				valid = append(valid, k)
			}
			continue
		}
		if bad == nil {
			bad = KeyErrors{}
			valid = append(make([]string, 0, len(keys)-1), keys[:i]...)
		}
		bad[k] = err
	}
	if bad == nil {
		return keys, nil
	}
	return valid, bad
}

// withKeyErrors returns err with the invalid keys of a batch call added
// (in a KeyErrors of their own when err is not one).
func withKeyErrors(err error, bad KeyErrors) error {
	if len(bad) == 0 {
		return err
	}
	if err == nil {
		return bad
	}
	if ke, ok := err.(KeyErrors); ok {
		for k, e := range bad {
			ke[k] = e
		}
		return ke
	}
	return errors.Join(bad, err)
}

// newConfig applies opts to the defaults and checks what depends on more
// than one option or on the L1 store; stale is l1's StaleLocal when an
// option needs it.
func newConfig[V any](l1 driver.Local[V], opts []Option) (cfg config, stale driver.StaleLocal[V], err error) {
	cfg = defaultConfig()
	for _, o := range opts {
		if o == nil {
			return cfg, nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return cfg, nil, err
		}
	}
	if err := cfg.checkLease(); err != nil {
		return cfg, nil, err
	}
	if cfg.hotThreshold > 0 && (l1 == nil || cfg.bus == nil) {
		return cfg, nil, fmt.Errorf("%w: WithHotKeyRefresh needs an L1 and an invalidation bus", ErrInvalidOption)
	}
	if cfg.slideEvery >= cfg.remoteTTL {
		return cfg, nil, fmt.Errorf("%w: sliding TTL interval %v must be shorter than the remote TTL %v", ErrInvalidOption, cfg.slideEvery, cfg.remoteTTL)
	}
	if cfg.staleIfError > 0 || cfg.softLoadTimeout > 0 {
		var ok bool
		if stale, ok = l1.(driver.StaleLocal[V]); !ok || l1 == nil {
			return cfg, nil, fmt.Errorf("%w: WithStaleIfError and WithSoftLoadTimeout need an L1 store that keeps expired entries (driver.StaleLocal, e.g. local.WithKeepStale)", ErrInvalidOption)
		}
	}
	return cfg, stale, nil
}
