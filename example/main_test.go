package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/tiercache/tiercache/debugpage"
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

// testService runs the data cache scenario and the HTTP cache scenario,
// each on a service of its own.
func testService(t *testing.T, cfg Config, wantMode string) {
	t.Run("data cache", func(t *testing.T) { testDataCache(t, cfg, wantMode) })
	t.Run("HTTP cache", func(t *testing.T) { testHTTPCache(t, cfg) })
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

// testDataCache runs the read, write and stats scenario of the data cache
// on one node. It checks DB query counts exactly; it checks tier hits as
// L1+L2 sums, since on a shared Redis another bus's flush may move a hit
// from L1 to L2. Every request says Cache-Control: no-cache, so that the
// HTTP cache does not answer it from a stored response: every read reaches
// its handler and the data cache (testHTTPCache covers the HTTP cache).
func testDataCache(t *testing.T, cfg Config, wantMode string) {
	cfg.QueryDelay = time.Millisecond
	c := startService(t, cfg)
	c.header = http.Header{"Cache-Control": {"no-cache"}}

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
	// The status page shows both caches and the bus.
	var page debugpage.View
	c.do(http.MethodGet, "/debug/tiercache?format=json", "", http.StatusOK, &page)
	if len(page.Caches) != 2 || page.Caches[0].Name != c.name || page.Caches[1].Name != c.name+"-http" || len(page.Buses) != 1 {
		t.Fatalf("status page: %d caches (%+v), %d buses; want %s and %s-http, one bus", len(page.Caches), page.Caches, len(page.Buses), c.name, c.name)
	}
	if r := page.Caches[0].Recent; r.Loads != 1 || r.L1.Requests != 2 || r.L1.Hits+r.L2.Hits != 1 {
		t.Errorf("status page, data cache: %+v; want 1 load, 2 L1 requests, 1 hit", r)
	}
	if h := c.do(http.MethodGet, "/debug/tiercache", "", http.StatusOK, nil); h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("status page Content-Type = %q", h.Get("Content-Type"))
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
	if st.HTTP.Hits != 0 || st.HTTP.Misses == 0 {
		t.Errorf("HTTP stats %+v: want no hits (no-cache), responses stored", st.HTTP)
	}

	// /metrics tells the same story as /stats: both read the cache's
	// counters, and nothing ran in between.
	m := c.metrics()
	cache := map[string]string{"tiercache_cache": c.name}
	with := func(kv ...string) map[string]string {
		l := maps.Clone(cache)
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   uint64
	}{
		{"tiercache_loader_calls_total", cache, st.Cache.Loads},
		{"tiercache_requests_total", with("tiercache_tier", "l1", "tiercache_result", "hit"), st.Cache.L1Hits},
		{"tiercache_requests_total", with("tiercache_tier", "l2", "tiercache_result", "hit"), st.Cache.L2Hits},
		{"tiercache_requests_total", with("tiercache_tier", "l2", "tiercache_result", "error"), 0},
	} {
		if got := m.value(tc.name, tc.labels); got != float64(tc.want) {
			c.t.Errorf("/metrics %s with labels %v = %v, want %d as in /stats", tc.name, tc.labels, got, tc.want)
		}
	}
}

// testHTTPCache runs the HTTP cache scenario on one node: a read is
// stored, the next one answered from the cache without reaching its handler;
// writes invalidate the product's URL and purge its tag, so that neither the
// product nor a batch showing it is served from an old response.
func testHTTPCache(t *testing.T, cfg Config) {
	cfg.QueryDelay = time.Millisecond
	c := startService(t, cfg)

	// A miss runs the handler and stores the response; the next read is a
	// hit: no handler, no query, an Age.
	var p Product
	h := c.do(http.MethodGet, "/products/42", "", http.StatusOK, &p)
	wantHeaders(t, "first GET /products/42", h, map[string]string{
		"Cache-Status":  "tiercache; fwd=uri-miss; stored",
		"Cache-Control": "public, max-age=5",
		"Surrogate-Key": "product-42",
	})
	var again Product
	h = c.do(http.MethodGet, "/products/42", "", http.StatusOK, &again)
	wantHit(t, "second GET /products/42", h)
	if again != p {
		t.Errorf("cached GET /products/42 = %+v, want %+v", again, p)
	}
	c.wantQueries(1)
	if st := c.stats(); st.Reads != 1 || st.HTTP.Hits != 1 || st.HTTP.Misses != 1 || st.HTTP.Stored != 1 {
		t.Errorf("after a miss and a hit: reads %d, HTTP stats %+v; want 1 read, 1 hit, 1 miss, 1 stored", st.Reads, st.HTTP)
	}
	// /stats and /metrics are not cached.
	if h := c.do(http.MethodGet, "/stats", "", http.StatusOK, nil); h.Get("Cache-Status") != "" {
		t.Errorf("GET /stats went through the HTTP cache: Cache-Status %q", h.Get("Cache-Status"))
	}

	// A batch is cached too, tagged with every id it asked for.
	var batch batchResponse
	h = c.do(http.MethodGet, "/products?ids=1,42,100000", "", http.StatusOK, &batch)
	wantHeaders(t, "first batch", h, map[string]string{
		"Cache-Status":  "tiercache; fwd=uri-miss; stored",
		"Surrogate-Key": "product-1 product-42 product-100000",
	})
	h = c.do(http.MethodGet, "/products?ids=1,42,100000", "", http.StatusOK, &batch)
	wantHit(t, "second batch", h)
	c.wantQueries(2) // 1 and 100000 in one query, 42 from the data cache
	// So is an absence.
	c.do(http.MethodGet, "/products/100000", "", http.StatusNotFound, nil)
	wantHit(t, "second GET /products/100000", c.do(http.MethodGet, "/products/100000", "", http.StatusNotFound, nil))

	// A client's no-cache skips the stored response and refreshes it.
	h = c.doWith(http.Header{"Cache-Control": {"no-cache"}}, http.MethodGet, "/products/42", "", http.StatusOK, nil)
	wantHeaders(t, "GET /products/42 with no-cache", h, map[string]string{"Cache-Status": "tiercache; fwd=request; stored"})

	// A PUT goes through the middleware: the next reads of the product and
	// of the batch show the new row, not a stored response.
	h = c.do(http.MethodPut, "/products/42", `{"name": "Renamed", "price_cents": 1234}`, http.StatusOK, nil)
	wantHeaders(t, "PUT /products/42", h, map[string]string{"Cache-Status": "tiercache; fwd=method"})
	want := Product{ID: 42, Name: "Renamed", PriceCents: 1234}
	h = c.do(http.MethodGet, "/products/42", "", http.StatusOK, &p)
	if p != want {
		t.Errorf("GET /products/42 after PUT = %+v, want %+v", p, want)
	}
	wantHeaders(t, "GET /products/42 after PUT", h, map[string]string{"Cache-Status": "tiercache; fwd=uri-miss; stored"})
	h = c.do(http.MethodGet, "/products?ids=1,42,100000", "", http.StatusOK, &batch)
	if len(batch.Products) != 2 || batch.Products[1] != want {
		t.Errorf("batch after PUT = %+v, want product 1 and %+v", batch.Products, want)
	}
	wantHeaders(t, "batch after PUT", h, map[string]string{"Cache-Status": "tiercache; fwd=stale; stored"}) // purged by tag
	wantHit(t, "GET /products/42 after the reload", c.do(http.MethodGet, "/products/42", "", http.StatusOK, nil))

	// Creating a product drops its cached absence, alone and in batches.
	c.do(http.MethodPut, "/products/100000", `{"name": "New", "price_cents": 1}`, http.StatusCreated, nil)
	if got := c.product("/products/100000", http.StatusOK); got.Name != "New" {
		t.Errorf("GET of a created product = %+v, want name New", got)
	}
	c.do(http.MethodGet, "/products?ids=1,42,100000", "", http.StatusOK, &batch)
	if len(batch.Products) != 3 || len(batch.Missing) != 0 {
		t.Errorf("batch after creating 100000 = %+v, want 3 products", batch)
	}

	// A DELETE too: the stored 200 is gone.
	c.do(http.MethodDelete, "/products/42", "", http.StatusNoContent, nil)
	c.do(http.MethodGet, "/products/42", "", http.StatusNotFound, nil)

	st := c.stats()
	if st.HTTP.InvalidatedURLs != 3 || st.HTTP.PurgedTags != 3 || st.HTTP.Bypassed != 3 {
		t.Errorf("HTTP stats %+v: want 3 URLs invalidated, 3 tags purged, 3 requests bypassed (the writes)", st.HTTP)
	}
	if st.Cache.HandledErrors != 0 || st.Cache.L2Errors != 0 {
		t.Errorf("cache stats %+v, want no L2 or handled errors", st.Cache)
	}

	// /metrics has the middleware's counters, the same as /stats.
	m := c.metrics()
	labels := func(kv ...string) map[string]string {
		l := map[string]string{"tiercache_cache": c.name + "-http", "otel_scope_name": "github.com/tiercache/tiercache/middleware"}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   uint64
	}{
		{"tiercache_http_requests_total", labels("tiercache_http_cache_status", "hit"), st.HTTP.Hits},
		{"tiercache_http_requests_total", labels("tiercache_http_cache_status", "miss"), st.HTTP.Misses},
		{"tiercache_http_requests_total", labels("tiercache_http_cache_status", "bypass"), st.HTTP.Bypassed},
		{"tiercache_http_stored_total", labels(), st.HTTP.Stored},
		{"tiercache_http_invalidations_total", labels("tiercache_http_reason", "unsafe_method"), st.HTTP.InvalidatedURLs},
		{"tiercache_http_invalidations_total", labels("tiercache_http_reason", "purge_tag"), st.HTTP.PurgedTags},
	} {
		if got := m.value(tc.name, tc.labels); got != float64(tc.want) {
			t.Errorf("/metrics %s with labels %v = %v, want %d as in /stats", tc.name, tc.labels, got, tc.want)
		}
	}
	// The HTTP cache's tiered cache reports as any other (its loads include
	// the tags' generations).
	if got := m.find("tiercache_requests_total", labels("otel_scope_name", "github.com/tiercache/tiercache/tiered")); len(got) == 0 {
		t.Errorf("/metrics has no tiercache_requests_total of the HTTP cache %s-http", c.name)
	}
}

// wantHeaders checks fields of a response header.
func wantHeaders(t *testing.T, what string, h http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s %q, want %q", what, k, got, v)
		}
	}
}

// wantHit checks that a response came from the HTTP cache: a Cache-Status
// hit and an Age within the response's freshness.
func wantHit(t *testing.T, what string, h http.Header) {
	t.Helper()
	if got := h.Get("Cache-Status"); !strings.Contains(got, "hit") {
		t.Errorf("%s: Cache-Status %q, want a hit", what, got)
	}
	if age, err := strconv.Atoi(h.Get("Age")); err != nil || age < 0 || age > 5 {
		t.Errorf("%s: Age %q, want 0 to 5 seconds", what, h.Get("Age"))
	}
}

// TestTwoNodes runs two replicas on one Redis and one catalog, behind one
// host name as behind a load balancer: the second replica answers from the
// HTTP response the first stored in L2, and reads through its data cache
// what the first loaded; both drop their copies when the first one writes
// (through the invalidation bus).
func TestTwoNodes(t *testing.T) {
	m := miniredis.RunT(t)
	catalog := NewCatalog(100, 0)
	cfg := Config{RedisAddr: m.Addr(), Catalog: catalog, CacheName: "products"}
	a, b := startService(t, cfg), startService(t, cfg)
	a.host, b.host = "products.test", "products.test"
	noCache := http.Header{"Cache-Control": {"no-cache"}}

	old := a.product("/products/7", http.StatusOK)
	var got Product
	h := b.do(http.MethodGet, "/products/7", "", http.StatusOK, &got)
	if got != old {
		t.Fatalf("node b read %+v, want %+v", got, old)
	}
	wantHit(t, "node b's first GET", h) // a's response, from L2
	if st := b.stats(); st.HTTP.Hits != 1 || st.Reads != 0 {
		t.Errorf("node b: HTTP stats %+v, %d reads; want 1 hit and no read reaching the handler", st.HTTP, st.Reads)
	}
	// Past the HTTP cache, b's data cache has the row from L2 too.
	b.doWith(noCache, http.MethodGet, "/products/7", "", http.StatusOK, &got)
	if got != old {
		t.Fatalf("node b read %+v, want %+v", got, old)
	}
	if st := b.stats(); st.Cache.L2Hits != 1 || st.Cache.Loads != 0 {
		t.Errorf("node b: cache stats %+v, want 1 L2 hit and no load", st.Cache)
	}
	wantHit(t, "node b's third GET", b.do(http.MethodGet, "/products/7", "", http.StatusOK, nil))
	if q := catalog.Queries(); q != 1 {
		t.Errorf("%d queries after four reads on two nodes, want 1", q)
	}

	// Node a publishes four keys for the write, and nothing before it
	// (loads publish nothing): the product's data cache key, the purge
	// epoch and the product's tag (PurgeTag), and the URL (the middleware).
	// Node b hears of them asynchronously, over pub/sub: wait until its bus
	// has applied them. It must then read the new row.
	a.do(http.MethodPut, "/products/7", `{"name": "Changed on a", "price_cents": 1}`, http.StatusOK, nil)
	b.await(func(st Stats) bool { return st.Bus != nil && st.Bus.KeysInvalidated >= 4 })
	h = b.do(http.MethodGet, "/products/7", "", http.StatusOK, &got)
	if got.Name != "Changed on a" {
		t.Errorf("node b read %+v after the write on node a, want the new row", got)
	}
	wantHeaders(t, "node b's GET after the write", h, map[string]string{"Cache-Status": "tiercache; fwd=uri-miss; stored"})
	if q := catalog.Queries(); q != 2 {
		t.Errorf("%d queries, want 2 (one per version of the row)", q)
	}
}

// testClient talks to one running service.
type testClient struct {
	t    *testing.T
	base string
	name string // the service's cache name (the HTTP cache's is name+"-http")
	// header is added to every request; host, if set, replaces the Host
	// header (replicas behind one load balancer all see the same).
	header http.Header
	host   string
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
		return &testClient{t: t, base: "http://" + addr, name: cfg.CacheName, stop: stop}
	case err := <-done:
		t.Fatalf("run failed to start: %v", err)
		return nil
	}
}

// do sends a request and checks the status; a JSON answer goes into out
// when out is not nil. It returns the response's header.
func (c *testClient) do(method, path, body string, wantStatus int, out any) http.Header {
	c.t.Helper()
	return c.doWith(nil, method, path, body, wantStatus, out)
}

// doWith is do with hdr added to the request (after c.header).
func (c *testClient) doWith(hdr http.Header, method, path, body string, wantStatus int, out any) http.Header {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, h := range []http.Header{c.header, hdr} {
		for k, vs := range h {
			req.Header[k] = append(req.Header[k], vs...)
		}
	}
	if c.host != "" {
		req.Host = c.host
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
	return resp.Header
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
