package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/trace"
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
	name    string
	prefix  string // name + ":", prepended to keys in L2
	l1      Local[V]
	l2      Remote
	cfg     config
	stats   counters
	tel     *telemetry
	breaker *breaker      // nil when off
	loadSem chan struct{} // WithMaxConcurrentLoads slots; nil when unlimited

	// closing is cancelled by Close; flights derive their context from it.
	closing context.Context
	cancel  context.CancelFunc
	closed  atomic.Bool

	mu         sync.Mutex // guards flights, refreshing and wg.Add against Close
	flights    map[string]*flight[V]
	refreshing map[string]struct{} // keys this node is refreshing early
	wg         sync.WaitGroup

	unsubscribe func()
}

// flight is the shared work of one key on this node. done is closed when
// value and err are set.
type flight[V any] struct {
	done  chan struct{}
	value V
	err   error
}

// New returns a cache named name (the namespace of its keys in L2 and on the
// bus: caches of different types must use different names). l1 or l2 may be
// nil (an L2-only or L1-only cache), not both. The cache owns l1 and closes
// it in Close; l2 and the bus are shared and left open.
func New[V any](name string, l1 Local[V], l2 Remote, opts ...Option) (*Cache[V], error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty name", ErrInvalidOption)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return nil, fmt.Errorf("%w: name %q has control characters", ErrInvalidOption, name)
	}
	if l1 == nil && l2 == nil {
		return nil, fmt.Errorf("%w: no L1 and no L2 store", ErrInvalidOption)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.leaseTTL == 0 {
		cfg.leaseTTL = cfg.loadTimeout + DefaultLeaseMargin
	}
	if cfg.onError == nil {
		cfg.onError = logTo(nil)
	}
	c := &Cache[V]{
		name:       name,
		prefix:     name + ":",
		l1:         l1,
		l2:         l2,
		cfg:        cfg,
		flights:    make(map[string]*flight[V]),
		refreshing: make(map[string]struct{}),
	}
	if cfg.maxLoads > 0 {
		c.loadSem = make(chan struct{}, cfg.maxLoads)
	}
	tel, err := newTelemetry(c)
	if err != nil {
		return nil, err
	}
	c.tel = tel
	if l2 != nil {
		c.l2 = measuredRemote{Remote: l2, t: tel}
		if cfg.breakerThreshold > 0 {
			c.breaker = &breaker{threshold: int64(cfg.breakerThreshold), coolDown: cfg.breakerCoolDown, onOpen: c.breakerOpened}
			c.l2 = guardedRemote{Remote: c.l2, b: c.breaker}
		}
	}
	c.closing, c.cancel = context.WithCancel(context.Background())
	if cfg.bus != nil && l1 != nil {
		unsub, err := cfg.bus.Subscribe(name, func(keys []string) { l1.Invalidate(keys...) }, l1.Flush)
		if err != nil {
			c.cancel()
			tel.close()
			return nil, fmt.Errorf("tiered: subscribing %q to the invalidation bus: %w", name, err)
		}
		c.unsubscribe = unsub
	}
	return c, nil
}

// Name returns the cache's name.
func (c *Cache[V]) Name() string { return c.name }

// Close stops the cache: in-flight loads are cancelled and awaited, the bus
// subscription ends and L1 is closed. Later calls return ErrClosed. Close is
// idempotent and always returns nil.
func (c *Cache[V]) Close() error {
	c.mu.Lock()
	already := c.closed.Swap(true)
	c.mu.Unlock()
	if already {
		return nil
	}
	c.cancel()
	c.wg.Wait()
	if c.unsubscribe != nil {
		c.unsubscribe()
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
	if key == "" {
		return ErrEmptyKey
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
	return context.WithTimeout(ctx, c.cfg.remoteTimeout)
}

// lookL1 reads L1. found reports an entry; err is ErrNotFound for a cached
// not-found. It allocates nothing.
func (c *Cache[V]) lookL1(key string) (v V, found bool, err error) {
	if c.l1 == nil {
		return v, false, nil
	}
	v, absent, ok := c.l1.Get(key)
	switch {
	case !ok:
		return v, false, nil
	case absent:
		c.stats.l1NotFound.Add(1)
		return v, true, ErrNotFound
	}
	c.stats.l1Hit.Add(1)
	return v, true, nil
}

// fillL1 stores an entry read from or written to L2 in L1 for
// min(LocalTTL, remaining L2 TTL), if key's generation is still gen.
func (c *Cache[V]) fillL1(key string, v V, absent bool, expiresAt time.Time, gen uint64) {
	if c.l1 == nil {
		return
	}
	ttl := c.cfg.localTTL
	if !expiresAt.IsZero() {
		ttl = min(ttl, time.Until(expiresAt))
	}
	c.l1.Fill(key, v, absent, ttl, gen)
}

// jittered returns d moved by a random fraction in [-jitter, +jitter].
func (c *Cache[V]) jittered(d time.Duration) time.Duration {
	if c.cfg.jitter == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + c.cfg.jitter*(2*rand.Float64()-1)))
}

// Get returns the value of key from L1 or L2 without loading it. A miss,
// including a cached not-found, is ok == false with a nil error; an L2
// failure is returned.
func (c *Cache[V]) Get(ctx context.Context, key string) (v V, ok bool, err error) {
	if err := c.check(key); err != nil {
		return v, false, err
	}
	if v, found, err := c.lookL1(key); found {
		return v, err == nil, nil
	}
	c.stats.l1Miss.Add(1)
	if c.l2 == nil {
		return v, false, nil
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.get")
	defer func() { endSpan(span, err) }()
	gen := c.generation(key)
	rctx, cancel := c.remoteCtx(ctx)
	e, err := c.l2.Get(rctx, c.prefix+key)
	cancel()
	if err != nil {
		return v, false, c.remoteErr("GET", key, err)
	}
	v, err = c.accept(ctx, key, e, gen)
	switch {
	case errors.Is(err, errUnusable):
		return v, false, nil
	case errors.Is(err, ErrNotFound):
		return v, false, nil
	}
	return v, err == nil, err
}

func (c *Cache[V]) generation(key string) uint64 {
	if c.l1 == nil {
		return 0
	}
	return c.l1.Generation(key)
}

// errUnusable means an L2 entry holds no value: a miss, a lease, or a payload
// the codec could not decode (deleted).
var errUnusable = errors.New("tiered: no usable L2 entry")

// accept turns an L2 entry into a result: a value (stored in L1), ErrNotFound
// (stored in L1), or errUnusable. A payload the codec cannot decode is
// deleted from L2 so the next read reloads it.
func (c *Cache[V]) accept(ctx context.Context, key string, e RemoteEntry, gen uint64) (v V, err error) {
	switch e.Kind {
	case KindValue:
		if err := c.l2.Unmarshal(e.Payload, &v); err != nil {
			c.stats.l2Corrupt.Add(1)
			c.report(ctx, fmt.Errorf("%w: decoding %q in cache %q (deleting it): %w", ErrCodec, key, c.name, err))
			rctx, cancel := c.remoteCtx(ctx)
			if err := c.l2.Delete(rctx, c.prefix+key); err != nil {
				c.report(ctx, c.remoteErr("DEL", key, err))
			}
			cancel()
			return v, errUnusable
		}
		c.stats.l2Hit.Add(1)
		c.fillL1(key, v, false, c.localExpiry(e), gen)
		return v, nil
	case KindNotFound:
		c.stats.l2NotFound.Add(1)
		c.fillL1(key, v, true, c.localExpiry(e), gen)
		return v, ErrNotFound
	}
	return v, errUnusable
}

// GetOrLoad returns the value of key: from L1, else from L2, else from load,
// storing what it loads in both tiers. Concurrent callers of one key on this
// node share one flight; across nodes, a lease in L2 makes one node load
// while the others wait for its result. It returns ErrNotFound when the key
// is known to be absent.
//
// The shared work runs detached from ctx (bounded by the load timeout), so
// one caller's cancellation never fails the others; each caller still
// returns when its own ctx ends. If L2 fails, the value comes from load and
// the L2 error goes to the error handler.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load Loader[V]) (V, error) {
	if err := c.check(key); err != nil {
		var zero V
		return zero, err
	}
	if v, found, err := c.lookL1(key); found {
		return v, err
	}
	if load == nil {
		var zero V
		return zero, fmt.Errorf("%w: nil loader", ErrInvalidOption)
	}
	c.stats.l1Miss.Add(1)
	ctx, span := c.tel.startSpan(ctx, "tiercache.get")
	f, leader, err := c.join(key)
	if err != nil {
		endSpan(span, err)
		var zero V
		return zero, err
	}
	span.SetAttributes(AttrShared.Bool(!leader))
	if leader {
		fctx, done := c.flightCtx(ctx)
		go func() {
			defer c.wg.Done()
			defer done()
			v, err := c.fetch(fctx, key, load)
			c.finish(key, f, v, err)
		}()
	}
	v, err := wait(ctx, f)
	endSpan(span, err)
	return v, err
}

// join returns key's flight on this node, creating it if there is none; the
// creator is the leader and must run it and call finish.
func (c *Cache[V]) join(key string) (f *flight[V], leader bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, false, ErrClosed
	}
	if f := c.flights[key]; f != nil {
		return f, false, nil
	}
	f = &flight[V]{done: make(chan struct{})}
	c.flights[key] = f
	c.wg.Add(1)
	return f, true, nil
}

func (c *Cache[V]) finish(key string, f *flight[V], v V, err error) {
	f.value, f.err = v, err
	c.mu.Lock()
	delete(c.flights, key)
	c.mu.Unlock()
	close(f.done)
}

func wait[V any](ctx context.Context, f *flight[V]) (V, error) {
	select {
	case <-f.done:
		return f.value, f.err
	case <-ctx.Done():
		var zero V
		return zero, context.Cause(ctx)
	}
}

// flightCtx returns the context of shared work started for a caller with
// ctx: it keeps ctx's values (trace context) but not its cancellation, ends
// after the load timeout, and is cancelled by Close.
func (c *Cache[V]) flightCtx(ctx context.Context) (context.Context, func()) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.loadTimeout)
	stop := context.AfterFunc(c.closing, cancel)
	return fctx, func() { stop(); cancel() }
}

// fetch is the shared work of one key's flight (read path steps 2-6).
func (c *Cache[V]) fetch(ctx context.Context, key string, load Loader[V]) (V, error) {
	// Another flight may have filled L1 since the caller looked.
	if v, found, err := c.lookL1(key); found {
		return v, err
	}
	gen := c.generation(key)
	if c.l2 == nil {
		v, err := c.callLoader(ctx, key, load)
		return c.keepLocal(key, v, err, gen)
	}
	return c.fetchRemote(ctx, key, gen, func(ctx context.Context) (V, error) {
		return c.callLoader(ctx, key, load)
	})
}

// keepLocal stores a load result in L1 only (no L2, or L2 failing) and
// returns it.
func (c *Cache[V]) keepLocal(key string, v V, err error, gen uint64) (V, error) {
	switch {
	case err == nil:
		c.fillL1(key, v, false, time.Time{}, gen)
	case errors.Is(err, ErrNotFound) && c.cfg.notFoundTTL > 0:
		c.fillL1(key, v, true, time.Now().Add(c.cfg.notFoundTTL), gen)
	}
	return v, err
}

// fetchRemote reads key from L2 and, on a miss, takes the lease and loads it,
// or waits for whoever holds the lease (steps 4-7). load is called at most
// once.
func (c *Cache[V]) fetchRemote(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error)) (V, error) {
	full := c.prefix + key
	var (
		waitingOn uint64 // token of the lease waited on; 0 before waiting
		waitStart time.Time
		poll      = c.cfg.pollMin
	)
	var waitSpan trace.Span
	defer func() {
		if waitingOn != 0 {
			took := time.Since(waitStart)
			c.stats.leaseWaitNanos.Add(uint64(took))
			c.tel.leaseWait.Record(ctx, took.Seconds(), c.tel.cacheOption)
			waitSpan.End()
		}
	}()
	// won finishes a load under a freshly taken lease.
	won := func(token uint64) (V, error) {
		c.stats.leaseAcquired.Add(1)
		if waitingOn != 0 {
			c.stats.leaseTakeovers.Add(1)
		}
		return c.loadLeased(ctx, key, token, gen, load)
	}
	for {
		rctx, cancel := c.remoteCtx(ctx)
		e, err := c.l2.Get(rctx, full)
		cancel()
		if err != nil {
			c.report(ctx, c.remoteErr("GET", key, err))
			return c.loadDegraded(ctx, key, gen, load)
		}
		if v, err := c.accept(ctx, key, e, gen); !errors.Is(err, errUnusable) {
			if e.Kind == KindValue {
				c.maybeRefresh(ctx, key, e, load)
			}
			return v, err
		}
		if e.Kind == KindFailed && e.Version == waitingOn {
			// The load we waited for failed: its callers got the loader's
			// error, and so do we.
			var zero V
			return zero, fmt.Errorf("%w: key %q in cache %q: %s", ErrLoadFailed, key, c.name, e.Payload)
		}
		if e.Kind != KindLease {
			// A miss, or the marker of an older failed load: take the lease.
			c.stats.l2Miss.Add(1)
			if c.cfg.noLeases {
				return c.loadUnleased(ctx, key, gen, load)
			}
			token, cur, ok, err := c.takeLease(ctx, full, e)
			if err != nil {
				c.report(ctx, c.remoteErr("lease", key, err))
				return c.loadDegraded(ctx, key, gen, load)
			}
			if ok {
				return won(token)
			}
			if v, err := c.accept(ctx, key, cur, gen); !errors.Is(err, errUnusable) {
				return v, err
			}
			if cur.Kind != KindLease {
				continue // the key changed under us: read again
			}
			e = cur
		}
		// Wait for the lease holder's result, polling with backoff.
		if waitingOn == 0 {
			waitStart = time.Now()
			c.stats.leaseWaits.Add(1)
			_, waitSpan = c.tel.startSpan(ctx, "tiercache.lease.wait")
		}
		waitingOn = e.Version
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero V
			return zero, fmt.Errorf("tiered: waiting for the lease on %q in cache %q: %w", key, c.name, context.Cause(ctx))
		case <-t.C:
		}
		poll = min(2*poll, c.cfg.pollMax)
	}
}

// takeLease tries to take the lease on full, which held e when last read: an
// empty key is taken with Acquire, the marker of a failed load by a
// compare-and-swap on its version. When the lease is not won, cur is what
// the key holds (zero after a lost compare-and-swap: read again).
func (c *Cache[V]) takeLease(ctx context.Context, full string, e RemoteEntry) (token uint64, cur RemoteEntry, won bool, err error) {
	token = rand.Uint64()
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	if e.Kind == KindFailed {
		won, err = c.l2.CompareAndSwap(rctx, full, e.Version, c.leaseEntry(token))
		return token, cur, won, err
	}
	cur, won, err = c.l2.Acquire(rctx, full, token, time.Now().Add(c.cfg.leaseTTL))
	return token, cur, won, err
}

// leaseEntry is the L2 entry of a lease with token.
func (c *Cache[V]) leaseEntry(token uint64) RemoteEntry {
	return RemoteEntry{Kind: KindLease, Version: token, ExpiresAt: time.Now().Add(c.cfg.leaseTTL)}
}

// loadUnleased loads and writes the result with a plain SET (WithoutLeases).
func (c *Cache[V]) loadUnleased(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error)) (V, error) {
	start := time.Now()
	v, err := load(ctx)
	return c.storeUnleased(ctx, key, gen, v, err, time.Since(start))
}

// storeUnleased writes a load result with a plain SET (WithoutLeases).
func (c *Cache[V]) storeUnleased(ctx context.Context, key string, gen uint64, v V, err error, took time.Duration) (V, error) {
	e, storable := c.entryFor(ctx, key, v, err, took)
	if !storable {
		return v, err
	}
	rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
	defer cancel()
	if serr := c.l2.Set(rctx, c.prefix+key, e); serr != nil {
		c.report(ctx, c.remoteErr("SET", key, serr))
	}
	c.fillL1(key, v, e.Kind == KindNotFound, c.localExpiry(e), gen)
	return v, err
}

// loadDegraded answers from the loader when L2 failed; the result goes to
// L1 only.
func (c *Cache[V]) loadDegraded(ctx context.Context, key string, gen uint64, load func(context.Context) (V, error)) (V, error) {
	v, err := load(ctx)
	return c.keepLocal(key, v, err, gen)
}

// loadLeased runs the loader under the lease with token and stores the
// result with a conditional fill: only if the key still holds the lease.
func (c *Cache[V]) loadLeased(ctx context.Context, key string, token uint64, gen uint64, load func(context.Context) (V, error)) (V, error) {
	start := time.Now()
	v, err := load(ctx)
	return c.storeLeased(ctx, key, token, gen, v, err, time.Since(start))
}

// storeLeased stores a load result made under the lease with token: a
// conditional fill if it is cacheable. Otherwise the lease becomes a short
// failure marker when the loader failed (so waiters on other nodes return
// the error instead of loading again), or is released when the load was
// cut short by its context (so a waiter takes over at once).
func (c *Cache[V]) storeLeased(ctx context.Context, key string, token uint64, gen uint64, v V, err error, took time.Duration) (V, error) {
	e, storable := c.entryFor(ctx, key, v, err, took)
	full := c.prefix + key
	rctx, cancel := c.remoteCtx(context.WithoutCancel(ctx))
	defer cancel()
	if !storable {
		var rerr error
		if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			failed := RemoteEntry{Kind: KindFailed, Version: token, Payload: []byte(err.Error()),
				ExpiresAt: time.Now().Add(c.failedTTL())}
			_, rerr = c.l2.CompareAndSwap(rctx, full, token, failed)
		} else {
			_, rerr = c.l2.CompareAndDelete(rctx, full, token)
		}
		if rerr != nil {
			c.report(ctx, c.remoteErr("lease release", key, rerr))
		}
		return v, err
	}
	filled, ferr := c.l2.CompareAndSwap(rctx, full, token, e)
	switch {
	case ferr != nil:
		c.report(ctx, c.remoteErr("fill", key, ferr))
		return c.keepLocal(key, v, err, gen)
	case !filled:
		// A Delete or Set removed our lease while we loaded: what we
		// loaded may be stale. Callers get it; no tier stores it.
		c.stats.fillsRejected.Add(1)
		return v, err
	}
	c.fillL1(key, v, e.Kind == KindNotFound, c.localExpiry(e), gen)
	return v, err
}

// failedTTL is how long the marker of a failed load stays in L2: long enough
// for every waiter, polling at most every pollMax, to see it.
func (c *Cache[V]) failedTTL() time.Duration { return time.Second + 4*c.cfg.pollMax }

// entryFor builds the L2 entry for a load result. storable is false when the
// result must not be cached: a loader error, a not-found with negative
// caching off, or a value the codec cannot encode (reported).
func (c *Cache[V]) entryFor(ctx context.Context, key string, v V, err error, took time.Duration) (e RemoteEntry, storable bool) {
	e.LoadTime, e.Version = took, rand.Uint64()
	switch {
	case err == nil:
		payload, merr := c.l2.Marshal(v)
		if merr != nil {
			c.report(ctx, fmt.Errorf("%w: encoding %q in cache %q: %w", ErrCodec, key, c.name, merr))
			return e, false
		}
		e.Kind, e.Payload = KindValue, payload
		e.ExpiresAt = time.Now().Add(c.jittered(c.cfg.remoteTTL))
		return e, true
	case errors.Is(err, ErrNotFound) && c.cfg.notFoundTTL > 0:
		e.Kind = KindNotFound
		e.ExpiresAt = time.Now().Add(c.jittered(c.cfg.notFoundTTL))
		return e, true
	}
	return e, false
}

// callLoader runs load for one key (see runLoad).
func (c *Cache[V]) callLoader(ctx context.Context, key string, load Loader[V]) (V, error) {
	return runLoad(c, ctx, "key "+strconv.Quote(key), func(ctx context.Context) (V, error) { return load(ctx, key) })
}

// runLoad runs one loader call (single or batch): it waits for a loader slot,
// counts and times the call in a span, and turns a panic into an error
// carrying the stack. what names the call in that error.
func runLoad[V, T any](c *Cache[V], ctx context.Context, what string, call func(context.Context) (T, error)) (out T, err error) {
	release, err := c.loadSlot(ctx)
	if err != nil {
		return out, err
	}
	defer release()
	c.stats.loads.Add(1)
	ctx, span := c.tel.startSpan(ctx, "tiercache.load")
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s in cache %q: %v\n%s", ErrLoaderPanic, what, c.name, r, debug.Stack())
		}
		c.endLoad(ctx, span, start, err)
		c.countLoad(err)
	}()
	return call(ctx)
}

// loadSlot waits for one of the WithMaxConcurrentLoads slots, if there is a
// limit, and returns the function that gives it back.
func (c *Cache[V]) loadSlot(ctx context.Context) (release func(), err error) {
	if c.loadSem == nil {
		return noCancel, nil
	}
	select {
	case c.loadSem <- struct{}{}:
		return c.releaseSlot, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("tiered: waiting for a loader slot in cache %q: %w", c.name, context.Cause(ctx))
	}
}

func (c *Cache[V]) releaseSlot() { <-c.loadSem }

// endLoad records a loader call's duration and ends its span.
func (c *Cache[V]) endLoad(ctx context.Context, span trace.Span, start time.Time, err error) {
	took := time.Since(start)
	c.stats.loadNanos.Add(uint64(took))
	c.tel.loadTime.Record(ctx, took.Seconds(), c.tel.cacheOption)
	endSpan(span, err)
}

func (c *Cache[V]) countLoad(err error) {
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		c.stats.loadNotFound.Add(1)
	default:
		c.stats.loadErrors.Add(1)
	}
}

// Set writes v under key through both tiers and tells the other nodes to
// drop their copies. An L2 failure is returned (L1 is left without the key);
// a failed broadcast returns an error matching ErrInvalidation.
func (c *Cache[V]) Set(ctx context.Context, key string, v V) (err error) {
	if err := c.check(key); err != nil {
		return err
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.set")
	defer func() { endSpan(span, err) }()
	var expiresAt time.Time
	if c.l2 != nil {
		e, _ := c.entryFor(ctx, key, v, nil, 0)
		if e.Kind != KindValue {
			return fmt.Errorf("%w: encoding %q in cache %q", ErrCodec, key, c.name)
		}
		rctx, cancel := c.remoteCtx(ctx)
		err := c.l2.Set(rctx, c.prefix+key, e)
		cancel()
		if err != nil {
			c.invalidateLocal(key)
			return c.remoteErr("SET", key, err)
		}
		expiresAt = e.ExpiresAt
	}
	// Invalidate after the L2 write: a flight that read the old value
	// before it must not fill L1 afterwards.
	c.invalidateLocal(key)
	c.fillL1(key, v, false, expiresAt, c.generation(key))
	return c.publish(ctx, []string{key})
}

// Delete removes keys from both tiers (killing any lease in flight, so no
// stale fill lands) and tells the other nodes to drop them. An L2 failure is
// returned; a failed broadcast returns an error matching ErrInvalidation.
// Delete is idempotent: retry it on error.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) (err error) {
	for _, k := range keys {
		if err := c.check(k); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	ctx, span := c.tel.startSpan(ctx, "tiercache.delete")
	defer func() { endSpan(span, err) }()
	if c.l2 != nil {
		full := make([]string, len(keys))
		for i, k := range keys {
			full[i] = c.prefix + k
		}
		rctx, cancel := c.remoteCtx(ctx)
		err := c.l2.Delete(rctx, full...)
		cancel()
		c.invalidateLocal(keys...)
		if err != nil {
			return c.remoteErr("DEL", keys[0], err)
		}
	} else {
		c.invalidateLocal(keys...)
	}
	return c.publish(ctx, keys)
}

func (c *Cache[V]) invalidateLocal(keys ...string) {
	if c.l1 != nil {
		c.l1.Invalidate(keys...)
	}
}

func (c *Cache[V]) publish(ctx context.Context, keys []string) error {
	if c.cfg.bus == nil {
		return nil
	}
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	if err := c.cfg.bus.Publish(rctx, c.name, keys); err != nil {
		return fmt.Errorf("%w: %d keys of cache %q: %w", ErrInvalidation, len(keys), c.name, err)
	}
	return nil
}
