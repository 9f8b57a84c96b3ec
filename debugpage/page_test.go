package debugpage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/debugpage"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
	"go.uber.org/goleak"
)

// The sources the page is meant for.
var (
	_ debugpage.CacheSource = (*tiered.Cache[int])(nil)
	_ debugpage.BusSource   = (*invalidation.Bus)(nil)
	_ debugpage.GroupSource = (*tiercache.Group)(nil)
)

// fakeClock is a Clock whose time and ticks the test sets.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	ticks chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC), ticks: make(chan time.Time)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *fakeClock) NewTicker(time.Duration) driver.Timer  { return fakeTicker{c.ticks} }
func (c *fakeClock) NewTimer(d time.Duration) driver.Timer { return driver.SystemClock.NewTimer(d) }

// fakeTicker delivers the ticks the test sends.
type fakeTicker struct{ c chan time.Time }

func (t fakeTicker) C() <-chan time.Time { return t.c }
func (t fakeTicker) Reset(time.Duration) {}
func (t fakeTicker) Stop()               {}

// tick makes the page take a sample at t and returns once it has: the
// ticks channel is unbuffered and the page takes one tick at a time, so
// the second send is received only after the first sample is done. The
// second sample (same time, no activity in between) changes nothing.
func (c *fakeClock) tick(t time.Time) {
	c.ticks <- t
	c.ticks <- t
}

type user struct{ ID, Name string }

func getJSON(t *testing.T, h http.Handler) debugpage.View {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/tiercache?format=json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	// Decode into a map first to assert the wire names, then into View.
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"caches", "buses", "window_seconds", "time"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("JSON has no %q: %s", k, rec.Body)
		}
	}
	var v debugpage.View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newGroup(t *testing.T, prefix string) *tiercache.Group {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	g, err := tiercache.NewGroup(rdb, tiercache.WithBusOptions(invalidation.WithChannelPrefix(prefix), invalidation.WithShards(2)),
		// Generous, so that a loaded machine does not turn a slow L2 read into
		// a degraded load and change the counts.
		tiercache.WithDefaults(tiered.WithRemoteTimeout(5*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

func ratioIs(r *float64, want float64) bool { return r != nil && *r > want-1e-9 && *r < want+1e-9 }

// TestJSONAfterWorkload drives two nodes on real Redis through a scripted
// workload and asserts what the page of node a reports.
func TestJSONAfterWorkload(t *testing.T) {
	ctx := context.Background()
	prefix := redistest.Name(t)
	ga, gb := newGroup(t, prefix), newGroup(t, prefix)
	name := prefix + "-users"
	a, err := tiercache.New[user](ga, name, tiercache.WithTiered(tiered.WithCircuitBreaker(5, time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tiercache.New[user](gb, name)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	t0 := clock.Now()
	page, err := debugpage.New(debugpage.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = page.Close() })
	page.AddGroup("node-a", ga) // the first sample, at t0

	load := func(_ context.Context, id string) (user, error) { return user{ID: id, Name: "v1"}, nil }
	// 10 cold reads (L1 miss, L2 miss, load), 10 warm ones (L1 hits).
	for round := range 2 {
		for i := range 10 {
			if _, err := a.GetOrLoad(ctx, fmt.Sprint("k", i), load); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	// b changes k0: a drops it from L1 and reads it from L2 (an L1 miss and
	// an L2 hit).
	before := ga.Bus().Stats().KeysInvalidated
	if err := b.Set(ctx, "k0", user{ID: "k0", Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a hears b's Set", func() bool { return ga.Bus().Stats().KeysInvalidated > before })
	if u, err := a.GetOrLoad(ctx, "k0", load); err != nil || u.Name != "v2" {
		t.Fatalf("a reads k0 = %+v, %v; want v2", u, err)
	}
	eventually(t, "a's L1 holds the 10 keys", func() bool { return a.Status().L1.Entries == 10 })

	// A load in flight.
	started, release := make(chan struct{}), make(chan struct{})
	slow := make(chan error, 1)
	go func() {
		_, err := a.GetOrLoad(ctx, "slow", func(context.Context, string) (user, error) {
			close(started)
			<-release
			return user{ID: "slow"}, nil
		})
		slow <- err
	}()
	<-started

	clock.set(t0.Add(30 * time.Second))
	v := getJSON(t, page)
	if len(v.Caches) != 1 || len(v.Buses) != 1 {
		t.Fatalf("%d caches, %d buses; want 1, 1", len(v.Caches), len(v.Buses))
	}
	c := v.Caches[0]
	if c.Name != name || v.Window != 60 || c.Recent.Seconds != 30 {
		t.Fatalf("name %q, window %v, recent %vs; want %q, 60, 30", c.Name, v.Window, c.Recent.Seconds, name)
	}
	// L1: 22 reads (20, the re-read of k0, the slow key), 10 hits.
	if c.Recent.L1.Requests != 22 || c.Recent.L1.Hits != 10 || !ratioIs(c.Recent.L1.Ratio, 10.0/22) {
		t.Errorf("L1 = %+v, want 22 requests, 10 hits", c.Recent.L1)
	}
	// L2: the 10 cold reads and the slow key missed, k0 hit.
	if c.Recent.L2.Requests != 12 || c.Recent.L2.Hits != 1 || !ratioIs(c.Recent.L2.Ratio, 1.0/12) {
		t.Errorf("L2 = %+v, want 12 requests, 1 hit", c.Recent.L2)
	}
	if c.Recent.Loads != 11 || c.LoadsInFlight != 1 || c.Flights != 1 {
		t.Errorf("loads %d, in flight %d, flights %d; want 11 (10 and the slow one), 1, 1", c.Recent.Loads, c.LoadsInFlight, c.Flights)
	}
	if !c.L1.Present || !c.L1.Sized || !c.L1.EntriesKnown || c.L1.Entries != 10 {
		t.Errorf("L1 = %+v, want 10 entries", c.L1)
	}
	if len(c.Breakers) != 1 || c.Breakers[0].State != tiered.BreakerClosed {
		t.Errorf("breakers = %+v, want one closed", c.Breakers)
	}
	if c.Totals.L1Hits != 10 {
		t.Errorf("totals L1 hits = %d, want 10", c.Totals.L1Hits)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}

	bv := v.Buses[0]
	if bv.Name != "node-a" || bv.Origin != fmt.Sprintf("%016x", ga.Bus().Origin()) || len(bv.Channels) != 2 {
		t.Fatalf("bus %q origin %q with %d channels; want node-a, %016x, 2", bv.Name, bv.Origin, len(bv.Channels), ga.Bus().Origin())
	}
	if bv.Recent.KeysInvalidated != 1 || bv.Recent.MessagesReceived != 1 || bv.Recent.LagSamples != 1 || bv.Recent.LagP50 <= 0 {
		t.Errorf("recent = %+v; want 1 key invalidated, 1 message, 1 lag sample", bv.Recent)
	}
	bOrigin := fmt.Sprintf("%016x", gb.Bus().Origin())
	heard := false
	for _, ch := range bv.Channels {
		if !ch.Subscribed {
			t.Errorf("channel %s not subscribed", ch.Name)
		}
		for _, o := range ch.Origins {
			if o.Origin == bOrigin && o.Seq >= 1 && ch.LastLag > 0 {
				heard = true // the channel of b's Set
			}
		}
	}
	if !heard {
		t.Errorf("no channel lists b's origin %s with a sequence number and the lag of its message: %+v", bOrigin, bv.Channels)
	}
	if len(bv.Flushes) != 0 {
		t.Errorf("flushes = %+v, want none yet", bv.Flushes)
	}

	// Sample at t0+30s, then b asks every node to flush the cache: the next
	// sample records one "remote" flush.
	clock.tick(t0.Add(30 * time.Second))
	flushes := ga.Bus().Stats().Flushes.Remote
	if err := gb.Bus().PublishFlush(ctx, name); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a hears b's flush", func() bool { return ga.Bus().Stats().Flushes.Remote > flushes })
	clock.tick(t0.Add(40 * time.Second))

	// At t0+95s the window starts at t0+35s: it begins at the t0+40s
	// sample, which saw none of the reads above, so it holds only this one,
	// of a new key: an L1 miss, an L2 miss and a load.
	if _, err := a.GetOrLoad(ctx, "new", load); err != nil {
		t.Fatal(err)
	}
	clock.set(t0.Add(95 * time.Second))
	v = getJSON(t, page)
	c, bv = v.Caches[0], v.Buses[0]
	if c.Recent.Seconds != 55 || c.Recent.L1.Requests != 1 || c.Recent.L1.Hits != 0 || !ratioIs(c.Recent.L1.Ratio, 0) {
		t.Errorf("recent after the window moved = %+v; want 55 s, 1 L1 request, no hit", c.Recent)
	}
	if c.Recent.L2.Requests != 1 || c.Recent.L2.Hits != 0 || !ratioIs(c.Recent.L2.Ratio, 0) || c.Recent.Loads != 1 {
		t.Errorf("L2 after the window moved = %+v, %d loads; want 1 request, no hit, 1 load", c.Recent.L2, c.Recent.Loads)
	}
	if c.LoadsInFlight != 0 || c.Flights != 0 {
		t.Errorf("in flight %d, flights %d after the slow load; want 0, 0", c.LoadsInFlight, c.Flights)
	}
	// The flush came after the first t0+30s sample; the second one (see
	// tick) may or may not have seen it.
	if len(bv.Flushes) != 1 || bv.Flushes[0].Reason != "remote" || bv.Flushes[0].Count != 1 ||
		!bv.Flushes[0].After.Equal(t0.Add(30*time.Second)) || bv.Flushes[0].Before.After(t0.Add(40*time.Second)) {
		t.Errorf("flushes = %+v; want one remote flush after t0+30s, seen by t0+40s", bv.Flushes)
	}

	// A cache closed on its own leaves the page.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if v := getJSON(t, page); len(v.Caches) != 0 {
		t.Errorf("closed cache still shown: %+v", v.Caches)
	}
}

// fakeBus is a BusSource without Status.
type fakeBus struct{ stats invalidation.Stats }

func (b *fakeBus) Stats() invalidation.Stats { return b.stats }

// TestHTML: the page is HTML with the right content type, self-contained,
// and escapes the names it shows.
func TestHTML(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	l1, err := local.New[int]()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[int](evil, l1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	page, err := debugpage.New(debugpage.WithTitle("svc <b>"))
	if err != nil {
		t.Fatal(err)
	}
	defer page.Close()
	page.AddCache(c)
	page.AddCache(c) // shown once
	page.AddBus(evil, &fakeBus{})

	srv := httptest.NewServer(page)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	html := string(raw)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q, want default-src 'none'", csp)
	}
	if strings.Contains(html, "<script") || strings.Contains(html, "<b>") {
		t.Errorf("unescaped name in the page:\n%s", html)
	}
	if got := strings.Count(html, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"); got != 2 {
		t.Errorf("escaped name appears %d times, want 2 (the cache and the bus)", got)
	}
	for _, bad := range []string{"src=", "href=\"http", "@import", "url("} {
		if strings.Contains(html, bad) {
			t.Errorf("the page loads something from elsewhere (%s)", bad)
		}
	}
	for _, want := range []string{"no breaker", "the bus does not report its channels", "none since the page started"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	for _, tc := range []struct {
		method, query string
		code          int
	}{
		{http.MethodPost, "", http.StatusMethodNotAllowed},
		{http.MethodGet, "?format=xml", http.StatusBadRequest},
		{http.MethodHead, "", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		page.ServeHTTP(rec, httptest.NewRequest(tc.method, "/debug/tiercache"+tc.query, nil))
		if rec.Code != tc.code {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.query, rec.Code, tc.code)
		}
		if tc.method == http.MethodHead && rec.Body.Len() != 0 {
			t.Errorf("HEAD has a body")
		}
	}
	if v := getJSON(t, page); len(v.Caches) != 1 || v.Caches[0].Name != evil || len(v.Buses) != 1 {
		t.Errorf("JSON = %+v; want the cache once and the bus", v)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []debugpage.Option
	}{
		{"nil option", []debugpage.Option{nil}},
		{"zero window", []debugpage.Option{debugpage.WithWindow(0)}},
		{"negative interval", []debugpage.Option{debugpage.WithInterval(-time.Second)}},
		{"window shorter than interval", []debugpage.Option{debugpage.WithWindow(time.Second), debugpage.WithInterval(2 * time.Second)}},
		{"zero recent flushes", []debugpage.Option{debugpage.WithRecentFlushes(0)}},
		{"nil clock", []debugpage.Option{debugpage.WithClock(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := debugpage.New(tc.opts...); !errors.Is(err, debugpage.ErrInvalidOption) {
				if p != nil {
					p.Close()
				}
				t.Fatalf("New = %v, want ErrInvalidOption", err)
			}
		})
	}
}

// TestCloseStopsSampling: Close stops the page's goroutine (with the system
// clock's ticker), and is idempotent.
func TestCloseStopsSampling(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p, err := debugpage.New(debugpage.WithInterval(time.Millisecond), debugpage.WithWindow(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p.AddBus("b", &fakeBus{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Still answers from fresh snapshots.
	if v := getJSON(t, p); len(v.Buses) != 1 {
		t.Fatalf("after Close: %+v", v)
	}
}
