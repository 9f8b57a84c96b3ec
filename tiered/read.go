package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel/trace"
)

// Read path: L1, the per-node flight, L2 (DESIGN §3).

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
	if c.hot != nil {
		c.hot.hit(key)
	}
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
		ttl = min(ttl, expiresAt.Sub(c.cfg.clock.Now()))
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
func (c *Cache[V]) accept(ctx context.Context, key string, e driver.Entry, gen uint64) (v V, err error) {
	if e.Kind == driver.KindTagged {
		return c.acceptTagged(ctx, key, e, gen) // checks the tags, then accepts
	}
	v, err = c.decodeEntry(ctx, key, e)
	if err == nil || errors.Is(err, ErrNotFound) {
		c.fillL1(key, v, e.Kind == driver.KindNotFound, c.localExpiry(e), gen)
	}
	return v, err
}

// decodeEntry is accept without the L1 fill (the caller fills L1 itself,
// e.g. a batch at once), for entries of kind KindValue and KindNotFound;
// other kinds are errUnusable (a tagged entry goes through accept).
func (c *Cache[V]) decodeEntry(ctx context.Context, key string, e driver.Entry) (v V, err error) {
	switch e.Kind {
	case driver.KindValue:
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
		c.maybeSlide(ctx, key, e)
		return v, nil
	case driver.KindNotFound:
		c.stats.l2NotFound.Add(1)
		c.maybeSlide(ctx, key, e)
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
	if span.IsRecording() {
		span.SetAttributes(AttrShared.Bool(!leader))
	}
	if leader {
		if v, err, ended := c.lead(ctx, key, f, load); ended {
			endSpan(span, err)
			return v, err
		}
	}
	soft := c.softTimer()
	v, err := c.awaitFlight(ctx, key, f, soft)
	soft.stop()
	endSpan(span, err)
	return v, err
}

// lead runs the first step of a flight on the leader's own goroutine: L1
// again, then one L2 read bounded by the leader's ctx. A value or a cached
// not-found there ends the flight at once (ended is true; v and err are its
// result, also handed to the callers that joined): an L2 hit costs no
// goroutine and no detached context. Anything else (a miss, a lease, an L2
// error, the leader's ctx ending) hands the flight to a goroutine that runs
// the shared work detached from ctx, as before; the leader then waits like
// every other caller. So one caller's cancellation still never fails the
// others: a failed inline read only starts the shared work, which reads
// again (and reports an L2 error if it persists).
func (c *Cache[V]) lead(ctx context.Context, key string, f *flight[V], load Loader[V]) (v V, err error, ended bool) {
	if v, found, err := c.lookL1(key); found {
		c.finish(key, f, v, err)
		c.wg.Done()
		return v, err, true
	}
	var pre []preRead
	if c.l2 != nil && ctx.Err() == nil {
		gen := c.generation(key)
		r := c.readOrLease(ctx, c.prefix+key)
		e, rerr := r.e, r.err
		r.gen = gen
		if ctx.Err() != nil {
			// Our own ctx cut the read short: the shared work reads again,
			// and knows the token we may have left in L2.
			r = preRead{gen: gen, token: r.token, cut: true}
		}
		if rerr == nil && e.Kind.IsValue() {
			v, err := c.accept(ctx, key, e, gen)
			if errors.Is(err, errUnusable) {
				// Corrupt: accept deleted it. For the shared work it is a
				// miss.
				r = preRead{gen: gen}
			} else {
				if e.Kind == driver.KindValue {
					c.maybeRefresh(ctx, key, e, loadCall[V]{one: load})
				}
				c.finish(key, f, v, err)
				c.wg.Done()
				return v, err, true
			}
		}
		pre = []preRead{r}
	}
	c.waitable(f)
	fctx, done := c.flightCtx(ctx)
	go func() {
		defer c.wg.Done()
		defer done()
		res := c.fetchKeys(fctx, []string{key}, loadCall[V]{one: load}, pre)
		c.finish(key, f, res[0].value, res[0].err)
	}()
	return v, nil, false
}

// preRead is an L2 read-or-lease made before the shared work of a flight
// started, and the L1 generation taken before it. token is the lease token
// the read offered (0 without leases): won reports that the lease is ours;
// when the read failed, the token may still have landed, and the shared
// work recognises it as its own. cut reports a read cut short by the
// caller's ctx: its outcome is unknown, and the shared work reads again.
type preRead struct {
	e     driver.Entry
	err   error
	gen   uint64
	token uint64
	won   bool
	cut   bool
}

// readOrLease is the one command of an L2 read that may load: it returns
// what full holds, or takes the load lease on it when it is empty (SET NX
// GET). Without leases it is a plain GET.
func (c *Cache[V]) readOrLease(ctx context.Context, full string) preRead {
	rctx, cancel := c.remoteCtx(ctx)
	defer cancel()
	if c.cfg.noLeases {
		e, err := c.l2.Get(rctx, full)
		return preRead{e: e, err: err}
	}
	token := c.newToken()
	e, won, err := c.l2.Acquire(rctx, full, token, c.cfg.clock.Now().Add(c.cfg.leaseTTL))
	return preRead{e: e, err: err, token: token, won: won}
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
		if f.done == nil {
			f.done = make(chan struct{})
		}
		return f, false, nil
	}
	f = &flight[V]{}
	c.flights[key] = f
	c.wg.Add(1)
	return f, true, nil
}

func (c *Cache[V]) finish(key string, f *flight[V], v V, err error) {
	c.mu.Lock()
	f.value, f.err = v, err
	if c.flights[key] == f { // not detached by a write
		delete(c.flights, key)
	}
	done := f.done
	if done == nil {
		// Nobody waits, and nobody can join any more (the flight left
		// the map here, or when a write detached it): a closed channel
		// keeps the rule that done is closed once the result is set.
		f.done = closedChan
	}
	c.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// closedChan is the done channel of a flight that ended before anyone
// waited on it.
var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// waitable makes f's done channel, for its leader, which waits on it once
// it has handed the flight to a goroutine.
func (c *Cache[V]) waitable(f *flight[V]) {
	c.mu.Lock()
	if f.done == nil {
		f.done = make(chan struct{})
	}
	c.mu.Unlock()
}

// detach ends the joining of the flights of keys (all flights when keys
// is nil): a flight that started before a write or an invalidation of its
// key may return the value it replaced, so a caller that comes after must
// start a flight of its own (read-your-writes). The detached flights still
// answer the callers that joined them, which were concurrent with the
// write. Writes call it once their L2 write is done; the bus callbacks
// when they have dropped the keys from L1.
func (c *Cache[V]) detach(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.flights) == 0 {
		return
	}
	if keys == nil {
		clear(c.flights)
		return
	}
	for _, k := range keys {
		delete(c.flights, k)
	}
}

// awaitFlight returns f's result, or ctx's end. When soft (the soft load
// timeout's timer, nil when off) fires first and key has an expired L1
// value young enough, it returns that value and leaves the flight to end in
// the background.
func (c *Cache[V]) awaitFlight(ctx context.Context, key string, f *flight[V], soft *softTimer) (V, error) {
	var fired <-chan time.Time
	if soft != nil {
		if soft.fired {
			// An earlier key of the call used the timer up: serve stale at
			// once, unless the flight is already done.
			select {
			case <-f.done:
				return f.value, f.err
			default:
			}
			if v, ok := c.softStale(ctx, key); ok {
				return v, nil
			}
		} else {
			fired = soft.t.C()
		}
	}
	for {
		select {
		case <-f.done:
			return f.value, f.err
		case <-ctx.Done():
			var zero V
			return zero, context.Cause(ctx)
		case <-fired:
			fired, soft.fired = nil, true
			if v, ok := c.softStale(ctx, key); ok {
				return v, nil
			}
		}
	}
}

// softTimer is the soft load timeout of one call: one timer for every key
// the call waits on, used by one goroutine.
type softTimer struct {
	t     driver.Timer
	fired bool
}

// softTimer starts the soft load timeout of a call, or returns nil when it
// is off.
func (c *Cache[V]) softTimer() *softTimer {
	if c.cfg.softLoadTimeout <= 0 {
		return nil
	}
	return &softTimer{t: c.cfg.clock.NewTimer(c.cfg.softLoadTimeout)}
}

func (s *softTimer) stop() {
	if s != nil {
		s.t.Stop()
	}
}

// softStale returns key's expired L1 value for a caller whose load outlived
// the soft load timeout, if it expired at most the soft stale window ago.
func (c *Cache[V]) softStale(ctx context.Context, key string) (V, bool) {
	var zero V
	if c.stale == nil {
		return zero, false
	}
	v, absent, expiredAt, ok := c.stale.GetStale(key)
	if !ok || absent || c.cfg.clock.Now().Sub(expiredAt) > c.cfg.softMaxStale {
		return zero, false
	}
	c.stats.softTimeouts.Add(1)
	trace.SpanFromContext(ctx).SetAttributes(AttrResult.String("stale"))
	return v, true
}

// flightCtx returns the context of shared work started for a caller with
// ctx: it keeps ctx's values (trace context) but not its cancellation, ends
// after the load timeout, and is cancelled by Close. It carries a fresh
// loadMeta: what the flight's loader calls set (SetTTL, tags).
func (c *Cache[V]) flightCtx(ctx context.Context) (context.Context, func()) {
	fctx, cancel := context.WithTimeout(withMeta(context.WithoutCancel(ctx)), c.cfg.loadTimeout)
	stop := context.AfterFunc(c.closing, cancel)
	return fctx, func() { stop(); cancel() }
}

// keepLocal stores a load result in L1 only (no L2, or L2 failing) and
// returns it.
func (c *Cache[V]) keepLocal(ctx context.Context, key string, v V, err error, gen uint64) (V, error) {
	switch {
	case err == nil:
		if !tagsAllowL1(ctx, key) {
			return v, err
		}
		var expiresAt time.Time
		if km, ok := keyMetaFrom(ctx, key); ok && km.ttl > 0 {
			expiresAt = c.cfg.clock.Now().Add(km.ttl)
		}
		c.fillL1(key, v, false, expiresAt, gen)
	case errors.Is(err, ErrNotFound):
		if ttl, store := c.ttlFor(ctx, key, true); store {
			c.fillL1(key, v, true, c.cfg.clock.Now().Add(ttl), gen)
		}
	}
	return v, err
}
