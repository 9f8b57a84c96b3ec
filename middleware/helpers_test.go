package middleware_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// clock is a controllable clock for freshness.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer and NewTicker run on the system clock: the middleware reads
// only Now.
func (c *clock) NewTimer(d time.Duration) driver.Timer  { return driver.SystemClock.NewTimer(d) }
func (c *clock) NewTicker(d time.Duration) driver.Timer { return driver.SystemClock.NewTicker(d) }

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// memCache returns an L1-only tiered cache of stored responses.
func memCache(tb testing.TB, opts ...tiered.Option) *tiered.Cache[*middleware.Response] {
	tb.Helper()
	l1, err := local.New[*middleware.Response](local.WithMaxEntries(10_000))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := tiered.New[*middleware.Response]("http", l1, nil, append([]tiered.Option{tiered.WithLocalTTL(time.Hour)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// origin is a test handler that counts its calls.
type origin struct {
	calls atomic.Int64
	fn    http.HandlerFunc
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.calls.Add(1)
	o.fn(w, r)
}

// fixture is one node: a middleware over an origin.
type fixture struct {
	t     testing.TB
	clock *clock
	mw    *middleware.Middleware
	o     *origin
	h     http.Handler
}

func newFixture(t testing.TB, fn http.HandlerFunc, opts ...middleware.Option) *fixture {
	t.Helper()
	return newFixtureOn(t, memCache(t), newClock(), fn, opts...)
}

func newFixtureOn(t testing.TB, cache *tiered.Cache[*middleware.Response], clk *clock, fn http.HandlerFunc, opts ...middleware.Option) *fixture {
	t.Helper()
	mw, err := middleware.New(cache, append([]middleware.Option{middleware.WithClock(clk)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mw.Close() })
	o := &origin{fn: fn}
	return &fixture{t: t, clock: clk, mw: mw, o: o, h: mw.Handler(o)}
}

// do sends a request; hdr holds name, value pairs.
func (f *fixture) do(method, target string, hdr ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *fixture) calls() int64 { return f.o.calls.Load() }

// cacheStatus returns the Cache-Status of a response.
func cacheStatus(w *httptest.ResponseRecorder) string {
	return strings.Join(w.Result().Header.Values("Cache-Status"), ", ")
}

func body(w *httptest.ResponseRecorder) string {
	b, _ := io.ReadAll(w.Result().Body)
	return string(b)
}

// text returns a handler writing a body with the given header pairs.
func text(b string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Add(hdr[i], hdr[i+1])
		}
		io.WriteString(w, b)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronization
	}
}

var ctx = context.Background()
