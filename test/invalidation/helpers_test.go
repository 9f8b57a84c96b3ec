// Package invalidation_test runs several tiercache nodes in one process
// (each with its own Redis client, ristretto L1 and invalidation bus) against
// real Redis, and checks what one node's writes do to the others' L1.
package invalidation_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

var _ driver.Bus = (*invalidation.Bus)(nil)

// client is what both *redis.Client and *redis.ClusterClient give the
// adapters.
type client interface {
	invalidation.Client
	remote.Client
}

type topology struct {
	name   string
	client func(testing.TB) client
}

func topologies() []topology {
	return []topology{
		{"standalone", func(t testing.TB) client { return redistest.Standalone(t) }},
		{"cluster", func(t testing.TB) client { return redistest.Cluster(t) }},
	}
}

// node is one service replica: its own client, L1, bus and cache.
type node struct {
	name  string
	bus   *invalidation.Bus
	l1    *guardedL1
	l2    driver.Remote
	cache *tiered.Cache[string]
}

type nodeConfig struct {
	busOpts   []invalidation.Option
	cacheOpts []tiered.Option
	// wrapRemote, when set, wraps node i's L2 store (to hook its calls).
	wrapRemote func(i int, r driver.Remote) driver.Remote
	// clients, when set, returns node i's clients for its bus and its L2
	// (often the same) in place of the topology's.
	clients func(t testing.TB, i int) (bus, l2 client)
}

// newNodes starts n nodes sharing cache name and the bus channel prefix.
func newNodes(t *testing.T, topo topology, n int, name string, cfg nodeConfig) []*node {
	t.Helper()
	busOpts := append([]invalidation.Option{invalidation.WithChannelPrefix("inv-it:" + name)}, cfg.busOpts...)
	nodes := make([]*node, n)
	for i := range nodes {
		c, l2c := client(nil), client(nil)
		if cfg.clients != nil {
			c, l2c = cfg.clients(t, i)
		} else {
			c = topo.client(t)
			l2c = c
		}
		bus, err := invalidation.New(c, busOpts...)
		if err != nil {
			t.Fatalf("invalidation.New: %v", err)
		}
		t.Cleanup(func() { _ = bus.Close() })
		store, err := local.New[string](local.WithMaxEntries(10_000))
		if err != nil {
			t.Fatalf("local.New: %v", err)
		}
		l1 := &guardedL1{Store: store}
		l2, err := remote.New(l2c)
		if err != nil {
			t.Fatalf("remote.New: %v", err)
		}
		var r driver.Remote = l2
		if cfg.wrapRemote != nil {
			r = cfg.wrapRemote(i, l2)
		}
		opts := append([]tiered.Option{
			tiered.WithInvalidation(bus),
			tiered.WithRemoteTimeout(2 * time.Second),
			tiered.WithRemoteTTL(time.Minute),
		}, cfg.cacheOpts...)
		cache, err := tiered.New[string](name, l1, r, opts...)
		if err != nil {
			t.Fatalf("tiered.New: %v", err)
		}
		t.Cleanup(func() { _ = cache.Close() })
		nodes[i] = &node{name: string(rune('A' + i)), bus: bus, l1: l1, l2: l2, cache: cache}
	}
	return nodes
}

// guardedL1 is the ristretto L1 with a hook that can hold a Fill, to force a
// read to pause between its L2 read and its L1 fill.
type guardedL1 struct {
	*local.Store[string]
	life atomic.Pointer[lifeLog] // set by trackLife

	mu          sync.Mutex
	holdFill    chan struct{} // when set, Fill reports on reached and waits for it to close
	reached     chan string
	invalidated chan string // when set, receives every invalidated key
}

func (g *guardedL1) Fill(key string, value string, absent bool, ttl time.Duration, gen uint64) bool {
	g.mu.Lock()
	hold, reached := g.holdFill, g.reached
	g.holdFill = nil
	g.mu.Unlock()
	if hold != nil {
		reached <- key
		<-hold
	}
	if l := g.life.Load(); l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		ok := g.Store.Fill(key, value, absent, ttl, gen)
		if ok {
			l.filled(key)
		}
		return ok
	}
	return g.Store.Fill(key, value, absent, ttl, gen)
}

func (g *guardedL1) Invalidate(keys ...string) {
	if l := g.life.Load(); l != nil {
		l.mu.Lock()
		g.Store.Invalidate(keys...)
		l.removed(keys)
		l.mu.Unlock()
	} else {
		g.Store.Invalidate(keys...)
	}
	g.mu.Lock()
	ch := g.invalidated
	g.mu.Unlock()
	if ch != nil {
		for _, k := range keys {
			select {
			case ch <- k:
			default:
			}
		}
	}
}

func (g *guardedL1) Flush() {
	if l := g.life.Load(); l != nil {
		start := time.Now()
		l.mu.Lock()
		defer l.mu.Unlock()
		g.Store.Flush()
		l.flushed(start)
		return
	}
	g.Store.Flush()
}

// trackLife starts logging when entries enter and leave the L1, and when
// it is flushed.
func (g *guardedL1) trackLife() *lifeLog {
	l := &lifeLog{since: make(map[string]time.Time)}
	g.life.Store(l)
	return l
}

// lifeLog is the log of trackLife. Its lock is held across the store's
// call and the log's update, so the log's order is the store's.
type lifeLog struct {
	mu      sync.Mutex
	since   map[string]time.Time // the entries in the L1, by when they were filled
	spans   []lifeSpan           // entries gone
	flushes []time.Time
	// flushTook is the longest Flush call (from the call until the
	// entries are gone: ristretto's Clear waits for its goroutine).
	flushTook time.Duration
}

type lifeSpan struct{ from, to time.Time }

func (l *lifeLog) filled(key string) {
	if _, ok := l.since[key]; !ok {
		l.since[key] = time.Now()
	}
}

func (l *lifeLog) removed(keys []string) {
	now := time.Now()
	for _, k := range keys {
		if from, ok := l.since[k]; ok {
			l.spans = append(l.spans, lifeSpan{from, now})
			delete(l.since, k)
		}
	}
}

func (l *lifeLog) flushed(start time.Time) {
	now := time.Now()
	l.flushTook = max(l.flushTook, now.Sub(start))
	for _, from := range l.since {
		l.spans = append(l.spans, lifeSpan{from, now})
	}
	clear(l.since)
	l.flushes = append(l.flushes, now)
}

// longest returns the longest time an entry stayed in the L1 within
// [from, to] (an entry filled before from counts from from; one still
// there counts until to). An entry replaced by a later fill of its key
// without a removal in between counts from its first fill.
func (l *lifeLog) longest(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var worst time.Duration
	in := func(s lifeSpan) {
		if s.to.After(to) {
			s.to = to
		}
		if s.from.Before(from) {
			s.from = from
		}
		worst = max(worst, s.to.Sub(s.from))
	}
	for _, s := range l.spans {
		in(s)
	}
	for _, f := range l.since {
		in(lifeSpan{f, to})
	}
	return worst
}

// flushTimes returns when the L1 was flushed (when each Flush returned),
// and the longest a Flush call took.
func (l *lifeLog) flushTimes() ([]time.Time, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.flushes), l.flushTook
}

// holdNextFill makes the next Fill report on the returned channel and wait
// until release is closed.
func (g *guardedL1) holdNextFill() (reached <-chan string, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holdFill = make(chan struct{})
	g.reached = make(chan string, 1)
	return g.reached, g.holdFill
}

func (g *guardedL1) watchInvalidations() <-chan string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.invalidated = make(chan string, 64)
	return g.invalidated
}

// cached reports what the node's L1 holds under key.
func (n *node) cached(key string) (string, bool) {
	v, absent, ok := n.l1.Get(key)
	return v, ok && !absent
}

// eventually polls cond until it holds or the deadline passes, and returns
// how long it took.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Microsecond) // polling interval, not synchronisation
	}
	return time.Since(start)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newCacheOn starts a second cache called name on n's bus and L2 client,
// with its own L1.
func newCacheOn(t *testing.T, n *node, name string) *node {
	t.Helper()
	store, err := local.New[string](local.WithMaxEntries(10_000))
	if err != nil {
		t.Fatal(err)
	}
	l1 := &guardedL1{Store: store}
	cache, err := tiered.New[string](name, l1, n.l2, tiered.WithInvalidation(n.bus), tiered.WithRemoteTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	return &node{name: n.name + "2", bus: n.bus, l1: l1, l2: n.l2, cache: cache}
}
