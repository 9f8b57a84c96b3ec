package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel/trace"
)

// The read engine: the shared work of a flight of one key or of many keys
// (read path steps 2-7, DESIGN §3 and §6.1), written once.
//
// Each key runs the lease machine (leasestate.go). The engine runs the keys
// in rounds; a round groups what the keys' machines ask for into as few
// calls as it can:
//
//  1. read: one read-or-lease of every key that needs one (one command for
//     one key; for a batch, one pipelined call per shard);
//  2. settle: accept the entries that answer (one L1 batch fill), take the
//     leases of the misses and of dead holders (compare-and-swap), until
//     every key is done, loading or waiting;
//  3. load: one loader call for every key won, loaded without leases, or
//     loaded alone, then one conditional fill per shard of the keys won,
//     the markers of failed loads, and the L1 fills;
//  4. wait: when nothing was loaded, wait for the holders of the keys still
//     leased elsewhere (a wake from the bus, the poll timer, or the end of
//     the flight), then read them again.
//
// A batch of one is the single-key path: it reads with one read-or-lease,
// fills with one compare-and-swap and calls a Loader directly.

// loadCall is the loader of a flight: one key's Loader, or a BatchLoader.
type loadCall[V any] struct {
	one  Loader[V]
	many BatchLoader[V]
}

// forKey is the loader of one key of the flight (early refresh).
func (l loadCall[V]) forKey(c *Cache[V], key string) func(context.Context) (V, error) {
	if l.one != nil {
		return func(ctx context.Context) (V, error) { return c.callLoader(ctx, key, l.one) }
	}
	return c.oneOf(key, l.many)
}

// loadKeys loads keys with one loader call; out[i] is keys[i]'s result.
func (c *Cache[V]) loadKeys(ctx context.Context, l loadCall[V], keys []string) []result[V] {
	out := make([]result[V], len(keys))
	if l.one != nil {
		for i, k := range keys {
			v, err := c.callLoader(ctx, k, l.one)
			out[i] = result[V]{v, err}
		}
		return out
	}
	m, err := c.callBatch(ctx, keys, l.many)
	for i, k := range keys {
		v, kerr := batchResult(m, err, k)
		out[i] = result[V]{v, kerr}
	}
	return out
}

// keyRun is one key of a flight in the engine.
type keyRun[V any] struct {
	key  string
	full string
	gen  uint64 // L1 generation before the first read
	s    keyLease
	act  leaseAction
	res  result[V]
	done bool

	lw        leaseWait
	waitStart time.Time // first wait; zero if the key never waited
	waitSpan  trace.Span
}

// engine runs the keys of one flight.
type engine[V any] struct {
	c     *Cache[V]
	ctx   context.Context
	load  loadCall[V]
	runs  []*keyRun[V]
	rules leaseRules
	poll  time.Duration
}

// fetchKeys is the shared work of a flight: keys[i]'s result is out[i].
// pre, if not nil, holds what the caller already read of each key (and the
// L1 generation before it): the first round uses it instead of reading.
func (c *Cache[V]) fetchKeys(ctx context.Context, keys []string, load loadCall[V], pre []preRead) []result[V] {
	out := make([]result[V], len(keys))
	store := make([]keyRun[V], len(keys)) // one allocation for every key's state
	runs := make([]*keyRun[V], 0, len(keys))
	var (
		at      []int // at[n] is the index in keys of runs[n]
		reading []*keyRun[V]
		w       = c.waker()
	)
	for i, k := range keys {
		// Another flight may have filled L1 since the caller looked.
		if v, found, err := c.lookL1(k); found {
			out[i] = result[V]{v, err}
			if pre != nil && (pre[i].won || pre[i].cut) && pre[i].token != 0 {
				// The caller's read took (or may have taken) the lease:
				// give it back, so that other nodes need not wait for it.
				c.resolveLease(ctx, k, pre[i].token, "release", nil)
			}
			continue
		}
		r := &store[len(runs)]
		*r = keyRun[V]{key: k, full: c.prefix + k, lw: leaseWait{w: w, ns: c.name, key: k}}
		r.gen = c.generation(k)
		if pre != nil {
			// The read was made under the older generation: keep that
			// one, so that an invalidation since then still wins.
			r.gen = pre[i].gen
		}
		runs = append(runs, r)
		at = append(at, i)
	}
	if len(runs) == 0 {
		return out
	}
	if c.l2 == nil {
		ks := make([]string, len(runs))
		for n, r := range runs {
			ks[n] = r.key
		}
		for n, res := range c.loadKeys(ctx, load, ks) {
			v, err := c.keepLocal(ctx, runs[n].key, res.value, res.err, runs[n].gen)
			out[at[n]] = result[V]{v, err}
		}
		return out
	}
	e := &engine[V]{c: c, ctx: ctx, load: load, runs: runs,
		rules: leaseRules{noLeases: c.cfg.noLeases, leaseTTL: c.cfg.leaseTTL}, poll: c.cfg.pollMin}
	now := c.cfg.clock.Now()
	for n, r := range runs {
		switch {
		case pre == nil:
			r.act = actRead
		case pre[at[n]].cut:
			// Our own ctx cut the read short: read again, knowing the
			// token we may have left in L2.
			r.s.sent = pre[at[n]].token
			r.act = actRead
		default:
			p := pre[at[n]]
			e.step(r, leaseEvent{kind: evRead, e: p.e, token: p.token, won: p.won, err: p.err, now: now})
		}
		if r.act == actRead {
			reading = append(reading, r)
		}
	}
	e.run(reading)
	for n, r := range runs {
		out[at[n]] = r.res
	}
	return out
}

// run drives every key to its result, round by round.
func (e *engine[V]) run(reading []*keyRun[V]) {
	for {
		e.read(reading)
		e.settle()
		loaded := e.loadRound()
		waiting := e.with(actWait)
		if len(waiting) == 0 {
			if len(e.with(actAlone)) == 0 && len(e.with(actRead)) == 0 {
				return
			}
		} else if !loaded {
			e.wait(waiting)
		} else {
			for _, r := range waiting {
				r.act = actRead // time has passed while we loaded: look again
			}
		}
		reading = e.with(actRead)
	}
}

// with returns the unfinished keys whose next action is a.
func (e *engine[V]) with(a leaseAction) []*keyRun[V] {
	var out []*keyRun[V]
	for _, r := range e.runs {
		if !r.done && r.act == a {
			out = append(out, r)
		}
	}
	return out
}

// step feeds ev to r's machine.
func (e *engine[V]) step(r *keyRun[V], ev leaseEvent) {
	ev.ctxDone = e.ctx.Err() != nil
	if ev.now.IsZero() {
		ev.now = e.c.cfg.clock.Now()
	}
	r.act = e.rules.next(&r.s, ev)
	if r.act == actWait && r.waitStart.IsZero() {
		r.waitStart = e.c.cfg.clock.Now()
		e.c.stats.leaseWaits.Add(1)
		_, r.waitSpan = e.c.tel.startSpan(e.ctx, "tiercache.lease.wait")
	}
}

// finish ends r with a result.
func (e *engine[V]) finish(r *keyRun[V], v V, err error) {
	r.res, r.done = result[V]{v, err}, true
	e.endWait(r)
}

// endWait unregisters r's waiter and records how long it waited.
func (e *engine[V]) endWait(r *keyRun[V]) {
	r.lw.end()
	if r.waitStart.IsZero() {
		return
	}
	took := e.c.cfg.clock.Now().Sub(r.waitStart)
	e.c.stats.leaseWaitNanos.Add(uint64(took))
	e.c.tel.leaseWait.Record(e.ctx, took.Seconds(), e.c.tel.cacheOption)
	r.waitSpan.End()
	r.waitStart = time.Time{}
}

// read sends one read-or-lease for each key of rs and steps their machines.
func (e *engine[V]) read(rs []*keyRun[V]) {
	c := e.c
	switch len(rs) {
	case 0:
		return
	case 1:
		p := c.readOrLease(e.ctx, rs[0].full)
		e.step(rs[0], leaseEvent{kind: evRead, e: p.e, token: p.token, won: p.won, err: p.err})
		return
	}
	full := make([]string, len(rs))
	for n, r := range rs {
		full[n] = r.full
	}
	reads, err := c.readOrLeaseMany(e.ctx, full)
	for n, r := range rs {
		if err != nil {
			e.step(r, leaseEvent{kind: evRead, err: err})
			continue
		}
		p := reads[n]
		e.step(r, leaseEvent{kind: evRead, e: p.e, token: p.token, won: p.won, err: p.err})
	}
}

// settle accepts the entries that answer and takes the leases the machines
// ask for, until no key is left accepting or taking.
func (e *engine[V]) settle() {
	for {
		accepting := e.with(actAccept)
		e.accept(accepting)
		taking := append(e.with(actTakeOver), e.with(actTakeLease)...)
		if len(taking) == 0 {
			if len(e.with(actAccept)) == 0 {
				break
			}
			continue
		}
		e.take(taking)
	}
	for _, r := range e.runs {
		if r.done {
			continue
		}
		switch r.act {
		case actFail:
			var zero V
			e.finish(r, zero, fmt.Errorf("%w: key %q in cache %q: %s", ErrLoadFailed, r.key, e.c.name, r.s.entry.Payload))
		case actAbort:
			// The flight ended (Close, or the load timeout) while L2 failed:
			// nobody is left to load for.
			var zero V
			e.finish(r, zero, fmt.Errorf("tiered: reading %q in cache %q: %w", r.key, e.c.name, context.Cause(e.ctx)))
		}
	}
}

// accept turns the entries of rs into results; for a batch, the values and
// not-founds go to L1 with one batch fill. An unusable entry is a miss.
func (e *engine[V]) accept(rs []*keyRun[V]) {
	c, ctx := e.c, e.ctx
	if len(rs) == 1 {
		r := rs[0]
		v, err := c.accept(ctx, r.key, r.s.entry, r.gen)
		e.accepted(r, v, err)
		return
	}
	if len(rs) == 0 {
		return
	}
	keys, entries := make([]string, len(rs)), make([]driver.Entry, len(rs))
	for n, r := range rs {
		keys[n], entries[n] = r.key, r.s.entry
	}
	ctx = c.prefetchTagGens(ctx, keys, entries)
	var hits []*keyRun[V]
	for _, r := range rs {
		ent := r.s.entry
		if ent.Kind == driver.KindTagged {
			v, err := c.accept(ctx, r.key, ent, r.gen) // checks the tags, fills L1 itself
			e.accepted(r, v, err)
			continue
		}
		v, err := c.decodeEntry(ctx, r.key, ent)
		e.accepted(r, v, err)
		if r.done {
			hits = append(hits, r)
		}
	}
	c.fillLocalMany(len(hits), func(n int) (string, V, bool, time.Time, uint64) {
		r := hits[n]
		return r.key, r.res.value, r.s.entry.Kind == driver.KindNotFound, c.localExpiry(r.s.entry), r.gen
	})
}

func (e *engine[V]) accepted(r *keyRun[V], v V, err error) {
	if errors.Is(err, errUnusable) {
		e.step(r, leaseEvent{kind: evUnusable, e: r.s.entry})
		return
	}
	if r.s.entry.Kind == driver.KindValue {
		e.c.maybeRefresh(e.ctx, r.key, r.s.entry, e.load)
	}
	e.finish(r, v, err)
}

// take runs the takeovers and lease takings of rs, a few at once.
func (e *engine[V]) take(rs []*keyRun[V]) {
	c := e.c
	evs := make([]leaseEvent, len(rs))
	inParallel(len(rs), func(n int) {
		r := rs[n]
		ev := &evs[n]
		if r.act == actTakeOver {
			ev.kind = evTakeOver
			ev.token, ev.won, ev.err = c.takeOver(e.ctx, r.full, r.s.entry)
			return
		}
		ev.kind = evTakeLease
		ev.token, ev.e, ev.won, ev.err = c.takeLease(e.ctx, r.full, r.s.entry)
	})
	for n, r := range rs {
		op := "lease"
		if evs[n].kind == evTakeOver {
			op = "lease takeover"
		}
		e.step(r, evs[n])
		if r.act == actAlone && r.s.err != nil {
			c.report(e.ctx, c.remoteErr(op, r.key, r.s.err))
			r.s.err = nil
		}
	}
}

// loadRound loads every key won, to be loaded without leases, or to be
// loaded alone, with one loader call, and stores the results. It reports
// whether it loaded anything.
func (e *engine[V]) loadRound() bool {
	c, ctx := e.c, e.ctx
	var won, unleased, alone []*keyRun[V]
	for _, r := range e.runs {
		if r.done {
			continue
		}
		switch r.act {
		case actLoad:
			c.stats.leaseAcquired.Add(1)
			if r.s.takeover {
				c.stats.leaseTakeovers.Add(1)
			}
			if r.s.waitingOn == 0 {
				c.stats.l2Miss.Add(1)
			}
			won = append(won, r)
		case actUnleased:
			c.stats.l2Miss.Add(1)
			unleased = append(unleased, r)
		case actAlone:
			if r.s.err != nil {
				c.report(ctx, c.remoteErr("GET", r.key, r.s.err))
				r.s.err = nil
			}
			c.stats.degradedLoads.Add(1)
			alone = append(alone, r)
		default:
			continue
		}
		e.endWait(r)
	}
	all := make([]*keyRun[V], 0, len(won)+len(unleased)+len(alone))
	all = append(append(append(all, won...), unleased...), alone...)
	if len(all) == 0 {
		return false
	}
	keys := make([]string, len(all))
	for n, r := range all {
		keys[n] = r.key
	}
	// The leases won are renewed while the loader runs, and announced to a
	// waking bus as resolved once their fills (or markers) are in L2.
	stop := noCancel
	var resolved []func()
	if len(won) > 0 {
		ks, ts := make([]string, len(won)), make([]uint64, len(won))
		for n, r := range won {
			ks[n], ts[n] = r.key, r.s.token
			resolved = append(resolved, c.holdLease(r.key))
		}
		stop = c.renewLeases(ctx, ks, ts)
	}
	start := c.cfg.clock.Now()
	results := c.loadKeys(ctx, e.load, keys)
	took := c.cfg.clock.Now().Sub(start)
	stop()
	for n, r := range all {
		r.res = results[n]
	}
	e.fill(won, took)
	for _, r := range resolved {
		r()
	}
	inParallel(len(unleased), func(n int) {
		r := unleased[n]
		r.res.value, r.res.err = c.storeUnleased(ctx, r.key, r.gen, r.res.value, r.res.err, took)
	})
	for _, r := range unleased {
		e.finish(r, r.res.value, r.res.err)
	}
	for _, r := range alone {
		v, err := r.res.value, r.res.err
		stale := false
		if err != nil && !errors.Is(err, ErrNotFound) {
			var sv V
			if sv, stale = c.serveStale(ctx, r.key); stale {
				v, err = sv, nil
			}
		}
		if !stale {
			v, err = c.keepLocal(ctx, r.key, v, err, r.gen)
		}
		if r.s.sent != 0 {
			// A read that failed may have taken the lease before it did:
			// give it back, so that other nodes need not wait for its TTL.
			c.resolveLease(ctx, r.key, r.s.sent, "release", nil)
		}
		e.finish(r, v, err)
	}
	return true
}

// fill stores the results of the keys won under their leases: one
// pipelined conditional fill per shard for a batch (fillMany), one
// compare-and-swap for one key (storeLeased), and resolves every lease.
func (e *engine[V]) fill(won []*keyRun[V], took time.Duration) {
	c, ctx := e.c, e.ctx
	if len(won) == 0 {
		return
	}
	if len(won) == 1 || c.l2lease == nil {
		inParallel(len(won), func(n int) {
			r := won[n]
			v, err := c.storeLeased(ctx, r.key, r.s.token, r.gen, r.res.value, r.res.err, took)
			r.res = result[V]{v, err}
		})
	} else {
		keys, tokens, gens := make([]string, len(won)), make([]uint64, len(won)), make([]uint64, len(won))
		results := make([]result[V], len(won))
		for n, r := range won {
			keys[n], tokens[n], gens[n], results[n] = r.key, r.s.token, r.gen, r.res
		}
		c.fillMany(ctx, c.l2lease, keys, tokens, gens, took, results)
		for n, r := range won {
			r.res = results[n]
		}
	}
	for _, r := range won {
		r.done = true
	}
}

// wait waits for the holders of the leases of rs: until a bus wakes one of
// them, the poll timer fires, or the flight ends; then each is read again,
// or loaded alone when half the flight is gone.
func (e *engine[V]) wait(rs []*keyRun[V]) {
	c, ctx := e.c, e.ctx
	for _, r := range rs {
		r.lw.await(r.s.waitingOn)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < c.cfg.loadTimeout/2 {
		for _, r := range rs {
			e.step(r, leaseEvent{kind: evWaited, late: true})
		}
		return
	}
	wake, stopWake := wakeAny(rs)
	defer stopWake()
	t := c.cfg.clock.NewTimer(e.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		late := errors.Is(context.Cause(ctx), context.DeadlineExceeded)
		for _, r := range rs {
			if late {
				e.step(r, leaseEvent{kind: evWaited, late: true})
				continue
			}
			var zero V
			e.finish(r, zero, fmt.Errorf("tiered: waiting for the lease on %q in cache %q: %w", r.key, c.name, context.Cause(ctx)))
		}
		return
	case <-t.C():
	case <-wake:
	}
	e.poll = min(2*e.poll, c.cfg.pollMax)
	for _, r := range rs {
		e.step(r, leaseEvent{kind: evWaited})
	}
}

// wakeAny returns a channel that fires when the bus wakes any of rs (nil
// when none can be woken), and a function that stops listening.
func wakeAny[V any](rs []*keyRun[V]) (<-chan struct{}, func()) {
	if len(rs) == 1 {
		return rs[0].lw.wake, noCancel
	}
	woken := make(chan struct{}, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range rs {
		if r.lw.wake == nil {
			continue
		}
		wg.Go(func() {
			select {
			case <-r.lw.wake:
				select {
				case woken <- struct{}{}:
				default:
				}
			case <-stop:
			}
		})
	}
	return woken, func() { close(stop); wg.Wait() }
}
