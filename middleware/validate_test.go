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

	"github.com/tiercache/tiercache/middleware"
)

// validatingOrigin is an origin with an ETag and a Last-Modified that
// answers conditional requests with 304, and records them.
type validatingOrigin struct {
	clock   *clock
	etag    atomic.Value // string
	cc      atomic.Value // string: Cache-Control of the next answer
	version atomic.Int64 // X-Version of the next answer
	gate    chan struct{}
	arrived atomic.Int64

	mu          sync.Mutex
	conditional []string // "INM|IMS" of each request
	full, n304  int
}

func newValidatingOrigin(clk *clock) *validatingOrigin {
	o := &validatingOrigin{clock: clk}
	o.etag.Store(`"v1"`)
	o.cc.Store("max-age=10")
	o.version.Store(1)
	return o
}

func (o *validatingOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.arrived.Add(1)
	if o.gate != nil {
		<-o.gate
	}
	inm, ims := r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")
	etag := o.etag.Load().(string)
	h := w.Header()
	h.Set("Date", o.clock.Now().Format(http.TimeFormat))
	h.Set("Cache-Control", o.cc.Load().(string))
	h.Set("Etag", etag)
	h.Set("X-Version", fmt.Sprint(o.version.Load()))
	o.mu.Lock()
	o.conditional = append(o.conditional, inm+"|"+ims)
	match := inm != "" && inm == etag
	if match {
		o.n304++
	} else {
		o.full++
	}
	o.mu.Unlock()
	if match {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Last-Modified", time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC).Format(http.TimeFormat))
	io.WriteString(w, "body of "+etag)
}

func (o *validatingOrigin) counts() (full, n304 int, conditional []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.full, o.n304, append([]string(nil), o.conditional...)
}

// A stale response with validators is refreshed with a conditional
// request; the origin's 304 updates the stored header and the stored body
// is served (RFC 9111, Sections 4.3.1 and 4.3.4).
func TestRevalidation(t *testing.T) {
	clk := newClock()
	o := newValidatingOrigin(clk)
	mw, err := middleware.New(memCache(t), middleware.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mw.Close() })
	f := &fixture{t: t, clock: clk, mw: mw, o: &origin{fn: o.ServeHTTP}}
	f.h = mw.Handler(f.o)

	f.do("GET", "http://example.com/r")
	clk.Advance(11 * time.Second)
	o.cc.Store("max-age=20")
	o.version.Store(2)
	w := f.do("GET", "http://example.com/r")
	if got, want := cacheStatus(w), "tiercache; fwd=stale; fwd-status=304; stored"; got != want {
		t.Errorf("revalidated: Cache-Status %q, want %q", got, want)
	}
	if w.Code != 200 || body(w) != `body of "v1"` {
		t.Fatalf("revalidated: %d %q, want the stored body", w.Code, body(w))
	}
	if got := w.Header().Get("X-Version"); got != "2" {
		t.Errorf("X-Version %q, want 2 (updated from the 304)", got)
	}
	if got := w.Header().Get("Last-Modified"); got == "" {
		t.Error("Last-Modified lost: fields the 304 does not carry must stay")
	}
	full, n304, cond := o.counts()
	if full != 1 || n304 != 1 {
		t.Fatalf("origin answered %d full, %d 304, want 1 and 1", full, n304)
	}
	if got, want := cond[1], `"v1"|Mon, 01 Jan 2029 00:00:00 GMT`; got != want {
		t.Errorf("conditional request carried %q, want %q", got, want)
	}
	// The new lifetime (20 s) from the 304 applies.
	clk.Advance(15 * time.Second)
	w = f.do("GET", "http://example.com/r")
	if cacheStatus(w) != "tiercache; hit" || w.Header().Get("X-Version") != "2" {
		t.Errorf("after revalidation: %q, X-Version %q; want a hit on the updated header", cacheStatus(w), w.Header().Get("X-Version"))
	}
	if got := mw.Stats().Validated; got != 1 {
		t.Errorf("Stats.Validated = %d, want 1", got)
	}

	// The client's own validators are answered from the revalidated
	// response.
	clk.Advance(30 * time.Second)
	w = f.do("GET", "http://example.com/r", "If-None-Match", `"v1"`)
	if w.Code != http.StatusNotModified {
		t.Errorf("stale, client If-None-Match matching: %d, want 304", w.Code)
	}
	if _, _, cond = o.counts(); !strings.HasPrefix(cond[len(cond)-1], `"v1"|`) {
		t.Errorf("origin got %q, want the stored validators", cond[len(cond)-1])
	}

	// A 304 for another representation is not applied: the cache asks
	// again without validators and stores the new response.
	clk.Advance(30 * time.Second)
	o.etag.Store(`"v2"`)
	w = f.do("GET", "http://example.com/r")
	if body(w) != `body of "v2"` {
		t.Errorf("changed representation: body %q", body(w))
	}
}

// Many requests for one stale response make one conditional request.
func TestRevalidationCoalesced(t *testing.T) {
	clk := newClock()
	o := newValidatingOrigin(clk)
	mw, err := middleware.New(memCache(t), middleware.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mw.Close() })
	h := mw.Handler(o)
	f := &fixture{t: t, clock: clk, mw: mw, h: h, o: &origin{}}
	f.do("GET", "http://example.com/c")
	clk.Advance(11 * time.Second)
	o.gate = make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if w := f.do("GET", "http://example.com/c"); w.Code != 200 || body(w) != `body of "v1"` {
				t.Errorf("%d %q", w.Code, body(w))
			}
		})
	}
	waitFor(t, "the conditional request", func() bool { return o.arrived.Load() == 2 })
	close(o.gate)
	wg.Wait()
	if full, n304, _ := o.counts(); full != 1 || n304 != 1 {
		t.Errorf("origin answered %d full and %d 304s, want 1 and 1 (one conditional request for 20 clients)", full, n304)
	}
}

// must-revalidate: a stale response is never served without the origin
// confirming it; with validators the check is a conditional request.
func TestMustRevalidateValidates(t *testing.T) {
	clk := newClock()
	o := newValidatingOrigin(clk)
	o.cc.Store("max-age=10, must-revalidate")
	var fail atomic.Bool
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		o.ServeHTTP(w, r)
	})
	o.clock = f.clock
	f.do("GET", "http://example.com/m")
	f.clock.Advance(11 * time.Second)
	if w := f.do("GET", "http://example.com/m"); w.Code != 200 || !strings.Contains(cacheStatus(w), "fwd-status=304") {
		t.Errorf("stale must-revalidate: %d %q, want 200 through a 304", w.Code, cacheStatus(w))
	}
	f.clock.Advance(11 * time.Second)
	fail.Store(true)
	if w := f.do("GET", "http://example.com/m"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("stale must-revalidate, origin down: %d, want its 503 (never the stale body)", w.Code)
	}
}

// Hit-for-pass: once a URL's response proved not storable, requests for
// it go to the origin at once and concurrently, not one after the other,
// and no load counts as a loader error.
func TestHitForPass(t *testing.T) {
	var inFlight, peak atomic.Int64
	gate := make(chan struct{})
	var gated atomic.Bool
	cache := memCache(t)
	clk := newClock()
	f := newFixtureOn(t, cache, clk, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if gated.Load() {
			<-gate
		}
		w.Header().Set("Cache-Control", "private, max-age=60")
		io.WriteString(w, "mine")
	}, middleware.WithHitForPass(5*time.Second))
	if w := f.do("GET", "http://example.com/private"); cacheStatus(w) != "tiercache; fwd=uri-miss" {
		t.Fatalf("first request: %q", cacheStatus(w))
	}
	gated.Store(true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			w := f.do("GET", "http://example.com/private")
			if got := cacheStatus(w); got != "tiercache; fwd=uri-miss; detail=hit-for-pass" || body(w) != "mine" {
				t.Errorf("concurrent request: %q %q", got, body(w))
			}
		})
	}
	waitFor(t, "8 concurrent origin calls", func() bool { return inFlight.Load() == 8 })
	close(gate)
	wg.Wait()
	if got := cache.Stats().LoadErrors; got != 0 {
		t.Errorf("tiered LoadErrors = %d, want 0", got)
	}
	// After the hit-for-pass time the URL is tried again, and stored if
	// it became storable.
	gated.Store(false)
	clk.Advance(6 * time.Second)
	if w := f.do("GET", "http://example.com/private"); cacheStatus(w) == "tiercache; fwd=uri-miss; detail=hit-for-pass" {
		t.Errorf("after the hit-for-pass time: %q, want the origin tried again", cacheStatus(w))
	}
	if w := f.do("GET", "http://example.com/private"); cacheStatus(w) != "tiercache; fwd=uri-miss; detail=hit-for-pass" {
		t.Errorf("still private: %q, want hit-for-pass renewed", cacheStatus(w))
	}

	// Off: every request loads.
	f = newFixture(t, text("x", "Cache-Control", "private"), middleware.WithHitForPass(0))
	f.do("GET", "http://example.com/p")
	if w := f.do("GET", "http://example.com/p"); cacheStatus(w) != "tiercache; fwd=uri-miss" {
		t.Errorf("hit-for-pass off: %q", cacheStatus(w))
	}
}

// Concurrent HEAD and GET misses of one URL share one origin call.
func TestHeadMissCoalesced(t *testing.T) {
	gate := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		<-gate
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "full body")
	})
	var wg sync.WaitGroup
	for i := range 10 {
		method := "HEAD"
		if i%2 == 0 {
			method = "GET"
		}
		wg.Go(func() {
			w := f.do(method, "http://example.com/hc")
			want := "full body"
			if method == "HEAD" {
				want = ""
			}
			if w.Code != 200 || body(w) != want || w.Header().Get("Content-Length") != "9" {
				t.Errorf("%s: %d %q Content-Length %q", method, w.Code, body(w), w.Header().Get("Content-Length"))
			}
		})
	}
	waitFor(t, "the load", func() bool { return f.calls() == 1 })
	close(gate)
	wg.Wait()
	if got := f.calls(); got != 1 {
		t.Errorf("origin calls = %d, want 1", got)
	}
}

// A response purged by tag is fetched whole, not revalidated: a purge asks
// for the origin's current response.
func TestPurgeTagNotRevalidated(t *testing.T) {
	clk := newClock()
	o := newValidatingOrigin(clk)
	mw, err := middleware.New(memCache(t), middleware.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mw.Close() })
	tagged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Surrogate-Key", "doc")
		o.ServeHTTP(w, r)
	})
	f := &fixture{t: t, clock: clk, mw: mw, h: mw.Handler(tagged), o: &origin{}}
	f.do("GET", "http://example.com/pt")
	if err := mw.PurgeTag(ctx, "doc"); err != nil {
		t.Fatal(err)
	}
	w := f.do("GET", "http://example.com/pt")
	if w.Code != 200 || strings.Contains(cacheStatus(w), "fwd-status=304") {
		t.Errorf("after PurgeTag: %d %q, want a full load", w.Code, cacheStatus(w))
	}
	full, n304, cond := o.counts()
	if full != 2 || n304 != 0 || cond[1] != "|" {
		t.Errorf("origin: %d full, %d 304, last request validators %q; want 2, 0 and none", full, n304, cond[len(cond)-1])
	}
}
