// Package invalidation_test runs several tiercache nodes in one process
// (each with its own Redis client, ristretto L1 and invalidation bus) against
// real Redis, and checks what one node's writes do to the others' L1.
package invalidation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

var _ tiered.Bus = (*invalidation.Bus)(nil)

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
	l2    tiered.Remote
	cache *tiered.Cache[string]
}

type nodeConfig struct {
	busOpts   []invalidation.Option
	cacheOpts []tiered.Option
	// wrapRemote, when set, wraps node i's L2 store (to hook its calls).
	wrapRemote func(i int, r tiered.Remote) tiered.Remote
}

// newNodes starts n nodes sharing cache name and the bus channel prefix.
func newNodes(t *testing.T, topo topology, n int, name string, cfg nodeConfig) []*node {
	t.Helper()
	busOpts := append([]invalidation.Option{invalidation.WithChannelPrefix("inv-it:" + name)}, cfg.busOpts...)
	nodes := make([]*node, n)
	for i := range nodes {
		c := topo.client(t)
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
		l2, err := remote.New(c)
		if err != nil {
			t.Fatalf("remote.New: %v", err)
		}
		var r tiered.Remote = l2
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
	return g.Store.Fill(key, value, absent, ttl, gen)
}

func (g *guardedL1) Invalidate(keys ...string) {
	g.Store.Invalidate(keys...)
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
