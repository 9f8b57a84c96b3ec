package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// topology is a way of running Redis for multi-node tests.
type topology struct {
	name   string
	client func(testing.TB) redis.UniversalClient
}

func topologies() []topology {
	return []topology{
		{"standalone", func(t testing.TB) redis.UniversalClient { return redistest.Standalone(t) }},
		{"cluster", func(t testing.TB) redis.UniversalClient { return redistest.Cluster(t) }},
	}
}

// cluster is several service replicas sharing one origin handler: each
// node has its own go-redis client, L1, L2 store, bus and middleware, as in
// production, and they share L2 and the bus channels.
type cluster struct {
	nodes []*fixture
	o     *origin
	clock *clock
}

// newCluster starts n nodes on topology top. The cache options are the
// ones the package documentation recommends.
func newCluster(t *testing.T, top topology, n int, fn http.HandlerFunc, opts ...middleware.Option) *cluster {
	t.Helper()
	name := redistest.Name(t)
	c := &cluster{o: &origin{fn: fn}, clock: newClock()}
	for range n {
		rdb := top.client(t)
		bus, err := invalidation.New(rdb, invalidation.WithChannelPrefix(name))
		if err != nil {
			t.Fatal(err)
		}
		l1, err := local.New[*middleware.Response](local.WithMaxCost(64<<20), local.WithCost((*middleware.Response).Size))
		if err != nil {
			t.Fatal(err)
		}
		l2, err := remote.New(rdb, remote.WithCodec(middleware.Codec{}))
		if err != nil {
			t.Fatal(err)
		}
		cache, err := tiered.New[*middleware.Response](name, l1, l2,
			tiered.WithInvalidation(bus),
			tiered.WithLocalTTL(10*time.Second),
			tiered.WithRemoteTTL(time.Hour),
			tiered.WithNotFoundTTL(0),
			// A new cluster client's first command also loads the slot map;
			// under -race that can take longer than the 100 ms default,
			// which would turn hits into (correct but unexpected) misses.
			tiered.WithRemoteTimeout(2*time.Second),
		)
		if err != nil {
			t.Fatal(err)
		}
		mw, err := middleware.New(cache, append([]middleware.Option{middleware.WithClock(c.clock)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		// Cleanups run last-in first-out: middleware, cache, then bus.
		t.Cleanup(func() { bus.Close() })
		t.Cleanup(func() { cache.Close() })
		t.Cleanup(func() { mw.Close() })
		c.nodes = append(c.nodes, &fixture{t: t, clock: c.clock, mw: mw, o: c.o, h: mw.Handler(c.o)})
	}
	return c
}

func forTopologies(t *testing.T, test func(t *testing.T, top topology)) {
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			t.Parallel()
			test(t, top)
		})
	}
}

// 100 concurrent misses of one URL spread over 3 nodes make one origin call.
func TestClusterCoalescing(t *testing.T) {
	forTopologies(t, func(t *testing.T, top topology) {
		gate := make(chan struct{})
		c := newCluster(t, top, 3, func(w http.ResponseWriter, r *http.Request) {
			<-gate
			w.Header().Set("Cache-Control", "max-age=60")
			io.WriteString(w, "the one response")
		})
		const n = 100
		var wg sync.WaitGroup
		var hits, collapsed, stored atomic.Int64
		for i := range n {
			node := c.nodes[i%len(c.nodes)]
			wg.Go(func() {
				w := node.do("GET", "http://example.com/hot")
				if got := body(w); got != "the one response" {
					t.Errorf("body %q", got)
				}
				switch s := cacheStatus(w); {
				case strings.Contains(s, "collapsed"):
					collapsed.Add(1)
				case strings.HasSuffix(s, "stored"):
					stored.Add(1)
				case s == "tiercache; hit":
					hits.Add(1)
				default:
					t.Errorf("Cache-Status %q", s)
				}
			})
		}
		// Hold the origin until the two other nodes wait on the lease.
		waitFor(t, "one origin call and two nodes waiting on its lease", func() bool {
			waiting := 0
			for _, node := range c.nodes {
				if node.mw.Cache().Stats().LeaseWaits > 0 {
					waiting++
				}
			}
			return c.o.calls.Load() == 1 && waiting == 2
		})
		close(gate)
		wg.Wait()
		if got := c.o.calls.Load(); got != 1 {
			t.Errorf("origin calls = %d, want 1", got)
		}
		if stored.Load() != 1 {
			t.Errorf("stored %d, collapsed %d, hits %d: want exactly one stored", stored.Load(), collapsed.Load(), hits.Load())
		}
		t.Logf("stored %d, collapsed %d, hits %d", stored.Load(), collapsed.Load(), hits.Load())
	})
}

// A response loaded on one node is a hit on the others (through L2), and
// each Vary variant is its own entry cluster-wide.
func TestClusterSharedEntries(t *testing.T) {
	forTopologies(t, func(t *testing.T, top topology) {
		c := newCluster(t, top, 3, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "Accept-Language")
			fmt.Fprintf(w, "hello in %s", r.Header.Get("Accept-Language"))
		})
		a, b, z := c.nodes[0], c.nodes[1], c.nodes[2]
		a.do("GET", "http://example.com/v", "Accept-Language", "en")
		for _, node := range []*fixture{b, z} {
			w := node.do("GET", "http://example.com/v", "Accept-Language", "en")
			if got, want := cacheStatus(w), "tiercache; hit"; got != want {
				t.Errorf("other node: Cache-Status %q, want %q", got, want)
			}
		}
		w := b.do("GET", "http://example.com/v", "Accept-Language", "fr")
		if got, want := body(w), "hello in fr"; got != want {
			t.Errorf("fr on b: %q, want %q", got, want)
		}
		if got := cacheStatus(z.do("GET", "http://example.com/v", "Accept-Language", "fr")); got != "tiercache; hit" {
			t.Errorf("fr on z: Cache-Status %q, want a hit", got)
		}
		if got := c.o.calls.Load(); got != 2 {
			t.Errorf("origin calls = %d, want 2", got)
		}
	})
}

// eventually polls a node until a GET gives the wanted body, and returns
// how long that took.
func eventually(t *testing.T, node *fixture, target, want string) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, fmt.Sprintf("GET %s = %q", target, want), func() bool {
		return body(node.do("GET", target)) == want
	})
	return time.Since(start)
}

// A successful POST on one node invalidates the URL on every node.
func TestClusterUnsafeInvalidates(t *testing.T) {
	forTopologies(t, func(t *testing.T, top topology) {
		var version atomic.Int64
		c := newCluster(t, top, 3, func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" {
				version.Add(1)
				w.WriteHeader(http.StatusNoContent)
				return
			}
			w.Header().Set("Cache-Control", "max-age=600")
			fmt.Fprintf(w, "v%d", version.Load())
		})
		a, b, z := c.nodes[0], c.nodes[1], c.nodes[2]
		for _, node := range c.nodes {
			if got := body(node.do("GET", "http://example.com/item")); got != "v0" {
				t.Fatalf("warm-up: %q", got)
			}
		}
		if w := z.do("POST", "http://example.com/item"); w.Code != http.StatusNoContent {
			t.Fatalf("POST: %d", w.Code)
		}
		// The writing node reads its own write at once.
		if got := body(z.do("GET", "http://example.com/item")); got != "v1" {
			t.Errorf("on the writing node: %q, want v1", got)
		}
		for i, node := range []*fixture{a, b} {
			d := eventually(t, node, "http://example.com/item", "v1")
			t.Logf("node %d saw the invalidation after %v", i, d)
		}
	})
}

func TestClusterPurge(t *testing.T) {
	forTopologies(t, func(t *testing.T, top topology) {
		var version atomic.Int64
		c := newCluster(t, top, 2, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("Surrogate-Key", "product-"+strings.TrimPrefix(r.URL.Path, "/p/")+" products")
			fmt.Fprintf(w, "%s v%d", r.URL.Path, version.Load())
		})
		a, b := c.nodes[0], c.nodes[1]
		for _, p := range []string{"/p/1", "/p/2"} {
			a.do("GET", "http://example.com"+p)
			if got := cacheStatus(a.do("GET", "http://example.com"+p)); got != "tiercache; hit" {
				t.Fatalf("%s not cached on a: %q", p, got)
			}
		}
		version.Store(1)
		t.Run("by URL", func(t *testing.T) {
			if err := b.mw.Purge(ctx, "http://example.com/p/1"); err != nil {
				t.Fatal(err)
			}
			eventually(t, a, "http://example.com/p/1", "/p/1 v1")
			if got := body(a.do("GET", "http://example.com/p/2")); got != "/p/2 v0" {
				t.Errorf("/p/2 purged too: %q", got)
			}
		})
		version.Store(2)
		t.Run("by tag", func(t *testing.T) {
			if err := b.mw.PurgeTag(ctx, "product-2"); err != nil {
				t.Fatal(err)
			}
			eventually(t, a, "http://example.com/p/2", "/p/2 v2")
			if got := body(a.do("GET", "http://example.com/p/1")); got != "/p/1 v1" {
				t.Errorf("/p/1 purged too: %q", got)
			}
			if err := b.mw.PurgeTag(ctx, "products"); err != nil {
				t.Fatal(err)
			}
			eventually(t, a, "http://example.com/p/1", "/p/1 v2")
		})
	})
}

// Every node finds the same response stale at once: one origin call
// replaces it for the whole cluster.
func TestClusterRefreshOnce(t *testing.T) {
	forTopologies(t, func(t *testing.T, top topology) {
		gate := make(chan struct{})
		var version atomic.Int64
		c := newCluster(t, top, 3, func(w http.ResponseWriter, r *http.Request) {
			if version.Load() > 0 {
				<-gate
			}
			w.Header().Set("Cache-Control", "max-age=10")
			fmt.Fprintf(w, "v%d", version.Load())
		})
		for _, node := range c.nodes {
			node.do("GET", "http://example.com/r")
		}
		c.clock.Advance(11 * time.Second)
		version.Store(1)
		var wg sync.WaitGroup
		for i := range 30 {
			node := c.nodes[i%3]
			wg.Go(func() {
				if got := body(node.do("GET", "http://example.com/r")); got != "v1" {
					t.Errorf("body %q, want v1", got)
				}
			})
		}
		waitFor(t, "the refresh to start", func() bool { return c.o.calls.Load() == 2 })
		close(gate)
		wg.Wait()
		if got := c.o.calls.Load(); got != 2 {
			t.Errorf("origin calls = %d, want 2 (one load, one refresh)", got)
		}
		for _, node := range c.nodes {
			if got := cacheStatus(node.do("GET", "http://example.com/r")); got != "tiercache; hit" {
				t.Errorf("after the refresh: Cache-Status %q", got)
			}
		}
	})
}

// With stale-while-revalidate, a stale response is served on every node
// while one of them refreshes it in the background.
func TestClusterStaleWhileRevalidate(t *testing.T) {
	forTopologies(t, func(t *testing.T, top topology) {
		var version atomic.Int64
		c := newCluster(t, top, 2, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
			fmt.Fprintf(w, "v%d", version.Load())
		})
		a, b := c.nodes[0], c.nodes[1]
		a.do("GET", "http://example.com/s")
		b.do("GET", "http://example.com/s")
		version.Store(1)
		c.clock.Advance(20 * time.Second)
		if got := cacheStatus(a.do("GET", "http://example.com/s")); got != "tiercache; hit; detail=stale-while-revalidate" {
			t.Errorf("stale on a: %q", got)
		}
		eventually(t, b, "http://example.com/s", "v1")
		if got := c.o.calls.Load(); got != 2 {
			t.Errorf("origin calls = %d, want 2", got)
		}
	})
}
