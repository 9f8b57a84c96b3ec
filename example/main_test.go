package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// The end-to-end tests start the service with run on a free port and talk
// HTTP to it. Which Redis they use:
//
//   - TestServiceEmbedded: always, on the embedded Redis (miniredis).
//   - TestServiceStandalone: on the Redis at TIERCACHE_REDIS_ADDR.
//   - TestServiceCluster: on the Redis Cluster at TIERCACHE_CLUSTER_ADDRS.
//
// The last two skip under -short, and skip when their variable is unset;
// otherwise the variable decides. With the repository's harness:
//
//	test/redis.sh start && eval "$(test/redis.sh env)" && (cd example && go test ./...)
//
// Each run uses its own cache name, so runs on a shared Redis never see each
// other's keys, and nothing is flushed.

func TestServiceEmbedded(t *testing.T) {
	testService(t, Config{}, "embedded")
}

func TestServiceStandalone(t *testing.T) {
	addr := realRedis(t, "TIERCACHE_REDIS_ADDR")
	testService(t, Config{RedisAddr: addr}, "standalone")
}

func TestServiceCluster(t *testing.T) {
	addrs := realRedis(t, "TIERCACHE_CLUSTER_ADDRS")
	testService(t, Config{ClusterAddrs: strings.Split(addrs, ",")}, "cluster")
}

// realRedis returns the value of the environment variable naming a real
// Redis, or skips the test.
func realRedis(t *testing.T, env string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping the test against the real Redis of %s", env)
	}
	v := os.Getenv(env)
	if v == "" {
		t.Skipf("%s is not set: skipping the test against a real Redis "+
			`(start one with test/redis.sh start && eval "$(test/redis.sh env)")`, env)
	}
	return v
}

// testService runs the read, write and stats scenario on one node. It
// checks DB query counts exactly; it checks tier hits as L1+L2 sums, since
// on a shared Redis another bus's flush may move a hit from L1 to L2.
func testService(t *testing.T, cfg Config, wantMode string) {
	cfg.QueryDelay = time.Millisecond
	c := startService(t, cfg)

	// A product twice: the second read costs no query.
	p := c.product("/products/42", http.StatusOK)
	if p.ID != 42 || p.Name == "" {
		t.Fatalf("GET /products/42 = %+v, want product 42", p)
	}
	c.wantQueries(1)
	if again := c.product("/products/42", http.StatusOK); again != p {
		t.Errorf("second GET /products/42 = %+v, want %+v", again, p)
	}
	c.wantQueries(1)
	if st := c.stats(); st.Cache.L1Hits+st.Cache.L2Hits != 1 || st.Cache.Loads != 1 {
		t.Errorf("after two reads: cache stats %+v, want 1 hit and 1 load", st.Cache)
	}

	// An update is seen at once by the next read.
	var put Product
	c.do(http.MethodPut, "/products/42", `{"name": "Renamed", "price_cents": 1234}`, http.StatusOK, &put)
	want := Product{ID: 42, Name: "Renamed", PriceCents: 1234}
	if put != want {
		t.Errorf("PUT /products/42 answered %+v, want %+v", put, want)
	}
	if got := c.product("/products/42", http.StatusOK); got != want {
		t.Errorf("GET after PUT = %+v, want %+v", got, want)
	}
	c.wantQueries(2)

	// A missing id is 404, and its absence is cached too.
	c.do(http.MethodGet, "/products/100000", "", http.StatusNotFound, nil)
	c.do(http.MethodGet, "/products/100000", "", http.StatusNotFound, nil)
	c.wantQueries(3)

	// A batch loads only what no tier holds (1 and 2), in one query.
	var batch batchResponse
	c.do(http.MethodGet, "/products?ids=1,2,42,100000", "", http.StatusOK, &batch)
	if len(batch.Products) != 3 || batch.Products[0].ID != 1 || batch.Products[1].ID != 2 || batch.Products[2] != want {
		t.Errorf("batch products = %+v, want ids 1, 2 and %+v", batch.Products, want)
	}
	if len(batch.Missing) != 1 || batch.Missing[0] != 100000 {
		t.Errorf("batch missing = %v, want [100000]", batch.Missing)
	}
	c.wantQueries(4)

	// Deletes and creations invalidate, including a cached absence.
	c.do(http.MethodDelete, "/products/42", "", http.StatusNoContent, nil)
	c.do(http.MethodGet, "/products/42", "", http.StatusNotFound, nil)
	c.do(http.MethodDelete, "/products/42", "", http.StatusNotFound, nil)
	c.do(http.MethodPut, "/products/100000", `{"name": "New", "price_cents": 1}`, http.StatusCreated, nil)
	if got := c.product("/products/100000", http.StatusOK); got.Name != "New" {
		t.Errorf("GET of a created product = %+v, want name New", got)
	}
	c.wantQueries(6)

	// Bad requests never reach the cache.
	for _, path := range []string{"/products/abc", "/products/0", "/products", "/products?ids=1,x"} {
		c.do(http.MethodGet, path, "", http.StatusBadRequest, nil)
	}
	c.do(http.MethodPut, "/products/1", `{"name": ""}`, http.StatusBadRequest, nil)

	st := c.stats()
	const reads = 8 // GETs of products that reached the cache
	if st.Redis != wantMode || st.Reads != reads || st.QueriesSaved != reads-6 || st.DB.Writes != 4 {
		t.Errorf("stats = %+v, want redis %q, %d reads, %d queries saved, 4 writes", st, wantMode, reads, reads-6)
	}
	if hits := st.Cache.L1Hits + st.Cache.L2Hits + st.Cache.L1NotFound + st.Cache.L2NotFound; hits != 4 {
		t.Errorf("cache stats %+v: %d hits, want 4 (42 and 100000 once alone, once in the batch)", st.Cache, hits)
	}
	if st.Bus == nil || st.Bus.MessagesSent == 0 {
		t.Errorf("bus stats %+v, want messages sent", st.Bus)
	}
	if st.Cache.L2Errors != 0 || st.Cache.HandledErrors != 0 {
		t.Errorf("cache stats %+v, want no L2 or handled errors", st.Cache)
	}

	// /metrics tells the same story as /stats: both read the cache's
	// counters, and nothing ran in between.
	m := c.metrics()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   uint64
	}{
		{"tiercache_loader_calls_total", nil, st.Cache.Loads},
		{"tiercache_requests_total", map[string]string{"tiercache_tier": "l1", "tiercache_result": "hit"}, st.Cache.L1Hits},
		{"tiercache_requests_total", map[string]string{"tiercache_tier": "l2", "tiercache_result": "hit"}, st.Cache.L2Hits},
		{"tiercache_requests_total", map[string]string{"tiercache_tier": "l2", "tiercache_result": "error"}, 0},
	} {
		if got := m.value(tc.name, tc.labels); got != float64(tc.want) {
			c.t.Errorf("/metrics %s with labels %v = %v, want %d as in /stats", tc.name, tc.labels, got, tc.want)
		}
	}
}

// TestTwoNodes runs two replicas on one Redis and one catalog: the second
// replica reads what the first loaded from L2, and drops its L1 copy when
// the first one writes (through the invalidation bus).
func TestTwoNodes(t *testing.T) {
	m := miniredis.RunT(t)
	catalog := NewCatalog(100, 0)
	cfg := Config{RedisAddr: m.Addr(), Catalog: catalog, CacheName: "products"}
	a, b := startService(t, cfg), startService(t, cfg)

	old := a.product("/products/7", http.StatusOK)
	if got := b.product("/products/7", http.StatusOK); got != old {
		t.Fatalf("node b read %+v, want %+v", got, old)
	}
	if st := b.stats(); st.Cache.L2Hits != 1 || st.Cache.Loads != 0 {
		t.Errorf("node b: cache stats %+v, want 1 L2 hit and no load", st.Cache)
	}
	if got := b.product("/products/7", http.StatusOK); got != old { // now in b's L1
		t.Fatalf("node b read %+v, want %+v", got, old)
	}
	if q := catalog.Queries(); q != 1 {
		t.Errorf("%d queries after three reads on two nodes, want 1", q)
	}

	a.do(http.MethodPut, "/products/7", `{"name": "Changed on a", "price_cents": 1}`, http.StatusOK, nil)
	// Node b hears of the write asynchronously, over pub/sub: wait until
	// its bus has applied it. It must then read the new row.
	b.await(func(st Stats) bool { return st.Bus != nil && st.Bus.KeysInvalidated >= 1 })
	if got := b.product("/products/7", http.StatusOK); got.Name != "Changed on a" {
		t.Errorf("node b read %+v after the write on node a, want the new row", got)
	}
	if q := catalog.Queries(); q > 2 {
		t.Errorf("%d queries, want at most 2 (one per version of the row)", q)
	}
}

// testClient talks to one running service.
type testClient struct {
	t    *testing.T
	base string
	// stop shuts the service down and waits for run to return; it checks
	// that run returned nil. It may be called more than once.
	stop func()
}

// startService runs the service on a free port until the test ends (or
// stop is called), and checks that it then shut down cleanly.
func startService(t *testing.T, cfg Config) *testClient {
	t.Helper()
	if cfg.CacheName == "" {
		cfg.CacheName = "example-test-" + rand.Text()[:10]
	}
	cfg.Addr = "127.0.0.1:0"
	if cfg.Products == 0 {
		cfg.Products = 500
	}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, ready) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v after shutdown, want nil", err)
		}
	})
	t.Cleanup(stop)
	select {
	case addr := <-ready:
		return &testClient{t: t, base: "http://" + addr, stop: stop}
	case err := <-done:
		t.Fatalf("run failed to start: %v", err)
		return nil
	}
}

// do sends a request and checks the status; a JSON answer goes into out
// when out is not nil.
func (c *testClient) do(method, path, body string, wantStatus int, out any) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	if resp.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(out); err != nil {
			c.t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
}

func (c *testClient) product(path string, wantStatus int) Product {
	c.t.Helper()
	var p Product
	c.do(http.MethodGet, path, "", wantStatus, &p)
	return p
}

func (c *testClient) stats() Stats {
	c.t.Helper()
	var st Stats
	c.do(http.MethodGet, "/stats", "", http.StatusOK, &st)
	return st
}

func (c *testClient) wantQueries(want uint64) {
	c.t.Helper()
	if got := c.stats().DB.Queries; got != want {
		c.t.Errorf("DB queries = %d, want %d", got, want)
	}
}

// await polls /stats until cond holds, for at most 10 s. It is for effects
// that travel between nodes asynchronously (pub/sub), which no request can
// wait for.
func (c *testClient) await(cond func(Stats) bool) {
	c.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		st := c.stats()
		if cond(st) {
			return
		}
		select {
		case <-deadline.C:
			c.t.Fatalf("condition not met within 10s; last stats: %+v", st)
		case <-tick.C:
		}
	}
}
