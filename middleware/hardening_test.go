package middleware_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
)

// A GET with a body is forwarded without lookup or store: its body cannot
// poison the entry body-less requests get, nor get a stored response.
func TestFatGETBypasses(t *testing.T) {
	rig := newProxyRig(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "callback=%q", string(b))
	})
	fat := func() (*http.Response, string) {
		req, _ := http.NewRequest("GET", rig.front.URL+"/jsonp", strings.NewReader("callback=evil"))
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, b := fat()
	if got, want := status(resp), "tiercache; fwd=bypass"; got != want || b != `callback="callback=evil"` {
		t.Fatalf("fat GET: Cache-Status %q body %q; want %q and the origin's answer", got, b, want)
	}
	resp, b = rig.get("GET", "/jsonp")
	if b != `callback=""` || !strings.Contains(status(resp), "stored") {
		t.Fatalf("plain GET after a fat one: %q, %q; want a clean miss, stored", status(resp), b)
	}
	resp, b = fat()
	if got := status(resp); got != "tiercache; fwd=bypass" || b != `callback="callback=evil"` {
		t.Fatalf("fat GET with a stored response: %q, %q; want it forwarded", got, b)
	}
	if resp, b = rig.get("GET", "/jsonp"); b != `callback=""` || status(resp) != "tiercache; hit" {
		t.Fatalf("plain GET: %q, %q; want the clean hit", status(resp), b)
	}
}

// The scheme in the key comes from the connection, never from an
// absolute-form target: a plain-HTTP request for https://victim/login
// cannot store the handler's redirect to https for HTTPS clients.
func TestSchemeFromConnection(t *testing.T) {
	redirect := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.TLS == nil && r.Header.Get("X-Forwarded-Proto") != "https" {
			w.Header().Set("Location", "https://"+r.Host+r.URL.Path)
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		io.WriteString(w, "login page")
	}
	f := newFixture(t, redirect)
	plain := httptest.NewRequest("GET", "https://victim.example/login", nil)
	plain.TLS = nil // absolute form over plain HTTP
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, plain)
	if w.Code != http.StatusMovedPermanently {
		t.Fatalf("plain request: status %d, want the handler's 301", w.Code)
	}
	w = f.do("GET", "https://victim.example/login") // over TLS
	if w.Code != 200 || body(w) != "login page" {
		t.Fatalf("HTTPS client got %d %q (%s), want the login page", w.Code, body(w), cacheStatus(w))
	}

	// With a trusted scheme header, its value decides; anything but
	// http or https bypasses the cache.
	f = newFixture(t, redirect, middleware.WithSchemeHeader("X-Forwarded-Proto"))
	f.do("GET", "http://victim.example/login")
	w = f.do("GET", "http://victim.example/login", "X-Forwarded-Proto", "https")
	if w.Code != 200 || !strings.Contains(cacheStatus(w), "fwd=") {
		t.Fatalf("X-Forwarded-Proto https: %d %s; want the page from the origin", w.Code, cacheStatus(w))
	}
	if w = f.do("GET", "http://victim.example/login", "X-Forwarded-Proto", "https"); cacheStatus(w) != "tiercache; hit" || w.Code != 200 {
		t.Fatalf("second https request: %d %s; want a hit on the page", w.Code, cacheStatus(w))
	}
	if w = f.do("GET", "http://victim.example/login", "X-Forwarded-Proto", "gopher"); cacheStatus(w) != "tiercache; fwd=bypass" {
		t.Fatalf("bad scheme header: %s, want a bypass", cacheStatus(w))
	}
	if _, err := middleware.New(memCache(t), middleware.WithSchemeHeader("bad name")); !errors.Is(err, middleware.ErrInvalidOption) {
		t.Errorf("WithSchemeHeader(bad name): %v", err)
	}
}

// With a default TTL, a response to a request with Cookie or Authorization
// that states no freshness is not stored (it may be a logged-in user's
// page); one that says public is.
func TestDefaultTTLSkipsCredentials(t *testing.T) {
	for _, cred := range []string{"Cookie", "Authorization"} {
		t.Run(cred, func(t *testing.T) {
			var cc string
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
				if cc != "" {
					w.Header().Set("Cache-Control", cc)
				}
				if r.Header.Get(cred) != "" {
					io.WriteString(w, "hello alice")
					return
				}
				io.WriteString(w, "hello guest")
			}, middleware.WithDefaultTTL(time.Minute))
			f.do("GET", "http://example.com/home", cred, "session=alice")
			if got := body(f.do("GET", "http://example.com/home")); got != "hello guest" {
				t.Fatalf("anonymous request got %q", got)
			}
			cc = "public"
			f.do("GET", "http://example.com/p", cred, "session=alice")
			if w := f.do("GET", "http://example.com/p"); cacheStatus(w) != "tiercache; hit" {
				t.Fatalf("public response: %s, want stored and hit", cacheStatus(w))
			}
		})
	}
}

// Every X-Forwarded-* field is keyed by default, not just a fixed list.
func TestForwardedHeadersKeyed(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "server=%s", r.Header.Get("X-Forwarded-Server"))
	})
	f.do("GET", "http://example.com/k")
	w := f.do("GET", "http://example.com/k", "X-Forwarded-Server", "evil")
	if body(w) != "server=evil" {
		t.Fatalf("X-Forwarded-Server request got %q (%s)", body(w), cacheStatus(w))
	}
	f.do("GET", "http://example.com/k", "X-Forwarded-Server", "evil")
	if got := body(f.do("GET", "http://example.com/k")); got != "server=" {
		t.Fatalf("plain request got %q: poisoned", got)
	}
	if got := body(f.do("GET", "http://example.com/k", "X-Forwarded-Server", "evil")); got != "server=evil" {
		t.Fatalf("evil variant got %q", got)
	}

	// WithKeyHeaders takes prefixes; a "*" elsewhere is an error.
	for _, bad := range []string{"*", "X-*-Host", "X-**"} {
		if _, err := middleware.New(memCache(t), middleware.WithKeyHeaders(bad)); !errors.Is(err, middleware.ErrInvalidOption) {
			t.Errorf("WithKeyHeaders(%q): %v", bad, err)
		}
	}
	f = newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "tenant=%s", r.Header.Get("X-Tenant-Id"))
	}, middleware.WithKeyHeaders("X-Tenant-*"))
	f.do("GET", "http://example.com/t", "X-Tenant-Id", "a")
	if got := body(f.do("GET", "http://example.com/t", "X-Tenant-Id", "b")); got != "tenant=b" {
		t.Fatalf("tenant b got %q", got)
	}
}

// The Vary limit (32 names) counts the response's Vary names only, not
// the key headers added to them.
func TestVaryLimitExcludesKeyHeaders(t *testing.T) {
	names := make([]string, 32)
	for i := range names {
		names[i] = fmt.Sprintf("X-V%02d", i)
	}
	f := newFixture(t, text("v", "Cache-Control", "max-age=60", "Vary", strings.Join(names, ", ")))
	f.do("GET", "http://example.com/v")
	if w := f.do("GET", "http://example.com/v"); cacheStatus(w) != "tiercache; hit" {
		t.Fatalf("32 Vary names: %s, want stored", cacheStatus(w))
	}
	f = newFixture(t, text("v", "Cache-Control", "max-age=60", "Vary", strings.Join(names, ", ")+", X-V99"))
	f.do("GET", "http://example.com/v")
	if w := f.do("GET", "http://example.com/v"); cacheStatus(w) == "tiercache; hit" {
		t.Fatal("33 Vary names stored")
	}
}

// Fields sent with a 103 Early Hints are not part of the final response.
func TestEarlyHintsDoNotLeak(t *testing.T) {
	rig := newProxyRig(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "page")
	})
	for i, want := range []string{"tiercache; fwd=uri-miss; stored", "tiercache; hit"} {
		resp, b := rig.get("GET", "/hints")
		if b != "page" || status(resp) != want {
			t.Fatalf("request %d: %q %q", i, status(resp), b)
		}
		if l := resp.Header.Values("Link"); len(l) != 0 {
			t.Errorf("request %d: final response carries the 103's Link %q", i, l)
		}
	}
}
