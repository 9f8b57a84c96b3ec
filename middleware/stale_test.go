package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
)

func TestStaleWhileRevalidate(t *testing.T) {
	var n atomic.Int64
	refreshing := make(chan struct{}, 10)
	release := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		v := n.Add(1)
		if v > 1 {
			refreshing <- struct{}{}
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=30")
		fmt.Fprintf(w, "v%d", v)
	})
	f.do("GET", "http://example.com/swr")
	f.clock.Advance(15 * time.Second)
	// Stale within the window: served at once, refreshed once in the
	// background however many requests see it.
	for range 5 {
		w := f.do("GET", "http://example.com/swr")
		if got := body(w); got != "v1" {
			t.Fatalf("stale body %q, want v1", got)
		}
		if got, want := cacheStatus(w), "tiercache; hit; detail=stale-while-revalidate"; got != want {
			t.Errorf("Cache-Status %q, want %q", got, want)
		}
		if got, want := w.Header().Get("Age"), "15"; got != want {
			t.Errorf("Age %q, want %q", got, want)
		}
	}
	<-refreshing
	close(release)
	waitFor(t, "the refreshed response", func() bool {
		return body(f.do("GET", "http://example.com/swr")) == "v2"
	})
	if got := cacheStatus(f.do("GET", "http://example.com/swr")); got != "tiercache; hit" {
		t.Errorf("after the refresh: Cache-Status %q", got)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("origin calls = %d, want 2", got)
	}
	// Past the window: refreshed synchronously.
	f.clock.Advance(41 * time.Second)
	if got := body(f.do("GET", "http://example.com/swr")); got != "v3" {
		t.Errorf("past the window: %q, want v3", got)
	}
}

func TestStaleIfError(t *testing.T) {
	var fail atomic.Bool
	var n atomic.Int64
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		v := n.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "down")
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=60")
		fmt.Fprintf(w, "v%d", v)
	})
	f.do("GET", "http://example.com/sie")
	fail.Store(true)
	f.clock.Advance(20 * time.Second)
	for range 2 {
		w := f.do("GET", "http://example.com/sie")
		if w.Code != 200 || body(w) != "v1" {
			t.Errorf("origin down, within stale-if-error: %d %q, want 200 v1", w.Code, body(w))
		}
		if got, want := cacheStatus(w), "tiercache; fwd=stale; detail=stale-if-error"; got != want {
			t.Errorf("Cache-Status %q, want %q", got, want)
		}
	}
	// Beyond the window the error goes through.
	f.clock.Advance(60 * time.Second)
	if w := f.do("GET", "http://example.com/sie"); w.Code != 503 {
		t.Errorf("beyond stale-if-error: status %d, want 503", w.Code)
	}
	// Back up: a fresh response again.
	fail.Store(false)
	if w := f.do("GET", "http://example.com/sie"); w.Code != 200 || body(w) == "v1" {
		t.Errorf("origin back: %d %q", w.Code, body(w))
	}
}

func TestMustRevalidateNeverStale(t *testing.T) {
	var fail atomic.Bool
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60")
		io.WriteString(w, "ok")
	})
	f.do("GET", "http://example.com/mr")
	f.clock.Advance(11 * time.Second)
	fail.Store(true)
	if w := f.do("GET", "http://example.com/mr"); w.Code != 500 {
		t.Errorf("must-revalidate served stale: %d %q", w.Code, cacheStatus(w))
	}
}

// Close stops a background refresh in progress and waits for it.
func TestCloseStopsRefresh(t *testing.T) {
	started := make(chan struct{})
	var n atomic.Int64
	var stopped atomic.Bool
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			close(started)
			<-r.Context().Done() // a slow origin: only cancellation ends it
			stopped.Store(true)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		io.WriteString(w, "x")
	})
	f.do("GET", "http://example.com/slow")
	f.clock.Advance(2 * time.Second)
	f.do("GET", "http://example.com/slow")
	<-started
	f.mw.Close()
	if !stopped.Load() {
		t.Error("Close returned before the refresh stopped")
	}
	if got := cacheStatus(f.do("GET", "http://example.com/slow")); got != "tiercache; fwd=bypass" {
		t.Errorf("after Close: Cache-Status %q, want bypass", got)
	}
}

func TestUnsafeInvalidates(t *testing.T) {
	var mu sync.Mutex
	version := map[string]int{}
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case "GET":
			w.Header().Set("Cache-Control", "max-age=600")
			fmt.Fprintf(w, "%s v%d", r.URL.Path, version[r.URL.Path])
		case "POST":
			version[r.URL.Path]++
			version["/items"]++
			if r.URL.Query().Get("fail") != "" {
				w.WriteHeader(500)
				return
			}
			w.Header().Set("Location", "/items")
			w.Header().Set("Content-Location", "http://other.example/items")
			w.WriteHeader(http.StatusCreated)
		}
	})
	get := func(p string) string { return body(f.do("GET", "http://example.com"+p)) }
	if got := get("/items/1"); got != "/items/1 v0" {
		t.Fatal(got)
	}
	get("/items")
	if w := f.do("POST", "http://example.com/items/1"); w.Code != 201 {
		t.Fatalf("POST: %d", w.Code)
	}
	if got, want := get("/items/1"), "/items/1 v1"; got != want {
		t.Errorf("after POST: %q, want %q", got, want)
	}
	if got, want := get("/items"), "/items v1"; got != want {
		t.Errorf("Location after POST: %q, want %q", got, want)
	}
	// A failed POST invalidates nothing.
	f.do("POST", "http://example.com/items/1?fail=1")
	if got, want := get("/items/1"), "/items/1 v1"; got != want {
		t.Errorf("after a failed POST: %q, want the cached %q", got, want)
	}
}

func TestPurge(t *testing.T) {
	var n atomic.Int64
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept")
		fmt.Fprintf(w, "v%d", n.Add(1))
	})
	f.do("GET", "http://example.com/p?b=2&a=1", "Accept", "x")
	f.do("GET", "http://example.com/p?b=2&a=1", "Accept", "y")
	if err := f.mw.Purge(ctx, "http://EXAMPLE.com:80/p?a=1&b=2"); err != nil {
		t.Fatal(err)
	}
	for _, acc := range []string{"x", "y"} {
		if w := f.do("GET", "http://example.com/p?b=2&a=1", "Accept", acc); cacheStatus(w) == "tiercache; hit" {
			t.Errorf("Accept %s: still cached after Purge", acc)
		}
	}
	for _, bad := range []string{"/relative", "http://%zz", ""} {
		if err := f.mw.Purge(ctx, bad); err == nil {
			t.Errorf("Purge(%q) = nil, want an error", bad)
		}
	}
}

func TestPurgeTag(t *testing.T) {
	var n atomic.Int64
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		switch r.URL.Path {
		case "/a":
			w.Header().Set("Surrogate-Key", "product-1 list")
		case "/b":
			w.Header().Set("Surrogate-Key", "product-2  list")
		case "/c":
			w.Header().Set("Surrogate-Key", "product-2")
		}
		fmt.Fprintf(w, "v%d", n.Add(1))
	})
	for _, p := range []string{"/a", "/b", "/c", "/d"} {
		f.do("GET", "http://example.com"+p)
	}
	hit := func(p string) bool { return cacheStatus(f.do("GET", "http://example.com"+p)) == "tiercache; hit" }
	for _, p := range []string{"/a", "/b", "/c", "/d"} {
		if !hit(p) {
			t.Fatalf("%s not cached", p)
		}
	}
	if err := f.mw.PurgeTag(ctx, "product-2"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"/a": true, "/b": false, "/c": false, "/d": true} {
		if got := hit(p); got != want {
			t.Errorf("after PurgeTag(product-2): %s hit = %v, want %v", p, got, want)
		}
	}
	// Reloaded responses are cached again.
	for _, p := range []string{"/b", "/c"} {
		if !hit(p) {
			t.Errorf("%s not cached again", p)
		}
	}
	if err := f.mw.PurgeTag(ctx, "list"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"/a": false, "/b": false, "/c": true, "/d": true} {
		if got := hit(p); got != want {
			t.Errorf("after PurgeTag(list): %s hit = %v, want %v", p, got, want)
		}
	}
	if err := f.mw.PurgeTag(ctx, "bad tag"); err == nil {
		t.Error("PurgeTag with a space: nil error")
	}
}

// A purge that lands while a tagged response is being loaded keeps the
// (possibly pre-purge) response out of the cache.
func TestPurgeTagDuringLoad(t *testing.T) {
	inHandler := make(chan struct{})
	release := make(chan struct{})
	var n atomic.Int64
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			close(inHandler)
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Surrogate-Key", "t")
		io.WriteString(w, "x")
	})
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- f.do("GET", "http://example.com/t") }()
	<-inHandler
	if err := f.mw.PurgeTag(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	close(release)
	w := <-done
	if got, want := cacheStatus(w), "tiercache; fwd=uri-miss"; got != want {
		t.Errorf("Cache-Status %q, want %q (not stored)", got, want)
	}
	if got := cacheStatus(f.do("GET", "http://example.com/t")); got != "tiercache; fwd=uri-miss; stored" {
		t.Errorf("next request: %q", got)
	}
}

func TestCustomTagHeaderAndName(t *testing.T) {
	f := newFixture(t, text("x", "Cache-Control", "max-age=60", "Cache-Tag", "k"),
		middleware.WithTagHeader("cache-tag"), middleware.WithCacheName("edge"))
	f.do("GET", "http://example.com/x")
	if got := cacheStatus(f.do("GET", "http://example.com/x")); got != "edge; hit" {
		t.Errorf("Cache-Status %q", got)
	}
	f.mw.PurgeTag(ctx, "k")
	if got := cacheStatus(f.do("GET", "http://example.com/x")); got != "edge; fwd=stale; stored" {
		t.Errorf("after PurgeTag: Cache-Status %q", got)
	}
}

// A response written after the client went away may be cut short: it is
// not stored.
func TestCancelledLoadNotStored(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "partial")
	})
	reqCtx, cancel := context.WithCancel(ctx)
	r := httptest.NewRequest("GET", "http://example.com/cut", nil).WithContext(reqCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.h.ServeHTTP(httptest.NewRecorder(), r)
	}()
	waitFor(t, "the origin call", func() bool { return f.calls() == 1 })
	cancel()
	<-done
	if got := f.mw.Cache().Stats(); got.L1Hits != 0 {
		t.Fatalf("unexpected hits %+v", got)
	}
	w := f.do("GET", "http://example.com/cut", "Cache-Control", "only-if-cached")
	if w.Code != http.StatusGatewayTimeout {
		t.Errorf("only-if-cached after a cancelled load: %d %q, want 504", w.Code, cacheStatus(w))
	}
}
