package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tiercache/tiercache/middleware"
)

func TestVaryVariants(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language, accept")
		fmt.Fprintf(w, "%s|%s", r.Header.Get("Accept-Language"), r.Header.Get("Accept"))
	})
	tests := []struct {
		hdr    []string
		body   string
		status string
	}{
		{[]string{"Accept-Language", "en"}, "en|", "tiercache; fwd=uri-miss; stored"},
		{[]string{"Accept-Language", "fr"}, "fr|", "tiercache; fwd=vary-miss; stored"},
		{[]string{"Accept-Language", "en"}, "en|", "tiercache; hit"},
		{[]string{"Accept-Language", "fr"}, "fr|", "tiercache; hit"},
		{nil, "|", "tiercache; fwd=vary-miss; stored"},
		{[]string{"Accept-Language", "en", "Accept", "text/html"}, "en|text/html", "tiercache; fwd=vary-miss; stored"},
		{[]string{"Accept-Language", ""}, "|", "tiercache; fwd=vary-miss; stored"}, // empty is not absent
		{nil, "|", "tiercache; hit"},
		{[]string{"Accept-Language", "en", "Accept", "text/html"}, "en|text/html", "tiercache; hit"},
		{[]string{"Accept-Language", "en", "Cookie", "s=1"}, "en|", "tiercache; hit"}, // Cookie is not in Vary
	}
	for i, tt := range tests {
		w := f.do("GET", "http://example.com/v", tt.hdr...)
		if got := body(w); got != tt.body {
			t.Errorf("%d %q: body %q, want %q", i, tt.hdr, got, tt.body)
		}
		if got := cacheStatus(w); got != tt.status {
			t.Errorf("%d %q: Cache-Status %q, want %q", i, tt.hdr, got, tt.status)
		}
	}
	if got, want := f.calls(), int64(5); got != want {
		t.Errorf("origin calls = %d, want %d", got, want)
	}
}

// User B never receives user A's response unless the response allowed it.
func TestAuthorization(t *testing.T) {
	t.Run("private by default", func(t *testing.T) {
		f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "account of %s", r.Header.Get("Authorization"))
		})
		for _, user := range []string{"alice", "bob", "alice", "bob"} {
			w := f.do("GET", "http://example.com/me", "Authorization", user)
			if got, want := body(w), "account of "+user; got != want {
				t.Errorf("%s got %q, want %q", user, got, want)
			}
		}
		// An anonymous request does not get an authorized response either.
		if got := body(f.do("GET", "http://example.com/me")); got != "account of " {
			t.Errorf("anonymous got %q", got)
		}
		// And an authorized request does not get the anonymous one, which
		// did not say it may be shared.
		if got := body(f.do("GET", "http://example.com/me", "Authorization", "carol")); got != "account of carol" {
			t.Errorf("carol got %q", got)
		}
	})
	for _, cc := range []string{"public, max-age=60", "s-maxage=60", "must-revalidate, max-age=60"} {
		t.Run(cc, func(t *testing.T) {
			f := newFixture(t, text("shared", "Cache-Control", cc))
			f.do("GET", "http://example.com/s", "Authorization", "alice")
			w := f.do("GET", "http://example.com/s", "Authorization", "bob")
			if got, want := cacheStatus(w), "tiercache; hit"; got != want {
				t.Errorf("Cache-Status %q, want %q", got, want)
			}
			if got := f.calls(); got != 1 {
				t.Errorf("origin calls = %d, want 1", got)
			}
		})
	}
	t.Run("coalesced", func(t *testing.T) {
		// Concurrent users share no flight result that is not stored.
		gate := make(chan struct{})
		f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
			<-gate
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "account of %s", r.Header.Get("Authorization"))
		})
		var wg sync.WaitGroup
		errs := make(chan string, 20)
		for i := range 20 {
			user := fmt.Sprintf("user%d", i)
			wg.Go(func() {
				if got := body(f.do("GET", "http://example.com/me", "Authorization", user)); got != "account of "+user {
					errs <- fmt.Sprintf("%s got %q", user, got)
				}
			})
		}
		waitFor(t, "the first origin call", func() bool { return f.calls() >= 1 })
		close(gate)
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}

// An unkeyed header that changes the body cannot poison the entry served
// to normal requests: the default key headers are keyed like Vary.
func TestUnkeyedHeaderPoisoning(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
			host = fh
		}
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, `<script src="https://%s/app.js">`, host)
	})
	want := `<script src="https://example.com/app.js">`
	evil := `<script src="https://evil/app.js">`
	for _, order := range []string{"attacker first", "victim first"} {
		t.Run(order, func(t *testing.T) {
			path := "http://example.com/" + strings.ReplaceAll(order, " ", "-")
			if order == "victim first" {
				if got := body(f.do("GET", path)); got != want {
					t.Fatalf("victim got %q", got)
				}
			}
			for range 2 {
				if got := body(f.do("GET", path, "X-Forwarded-Host", "evil")); got != evil {
					t.Errorf("attacker got %q, want %q", got, evil)
				}
			}
			for range 2 {
				if got := body(f.do("GET", path)); got != want {
					t.Errorf("victim got %q, want %q", got, want)
				}
			}
			if w := f.do("GET", path); cacheStatus(w) != "tiercache; hit" {
				t.Errorf("normal requests still cached? Cache-Status %q", cacheStatus(w))
			}
		})
	}
	t.Run("without key headers it would be poisoned", func(t *testing.T) {
		g := newFixture(t, f.o.fn, middleware.WithKeyHeaders())
		g.do("GET", "http://example.com/p", "X-Forwarded-Host", "evil")
		if got := body(g.do("GET", "http://example.com/p")); got != evil {
			t.Errorf("got %q; the test no longer shows the attack", got)
		}
	})
}

// Web cache deception: /account/x.css with a session cookie returns the
// account page; it is not stored when the origin marks it private or sets a
// cookie.
func TestCacheDeception(t *testing.T) {
	for _, mark := range [][]string{
		{"Cache-Control", "private, max-age=600"},
		{"Cache-Control", "max-age=600", "Set-Cookie", "session=rotated; HttpOnly"},
	} {
		t.Run(mark[1], func(t *testing.T) {
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
				c, err := r.Cookie("session")
				if err != nil {
					w.Header().Set("Cache-Control", "max-age=600")
					io.WriteString(w, "login page")
					return
				}
				for i := 0; i+1 < len(mark); i += 2 {
					w.Header().Add(mark[i], mark[i+1])
				}
				fmt.Fprintf(w, "account of %s", c.Value)
			})
			w := f.do("GET", "http://example.com/account/x.css", "Cookie", "session=victim")
			if got := body(w); got != "account of victim" {
				t.Fatalf("victim got %q", got)
			}
			if strings.Contains(cacheStatus(w), "stored") {
				t.Errorf("stored: %q", cacheStatus(w))
			}
			if got := body(f.do("GET", "http://example.com/account/x.css")); got != "login page" {
				t.Errorf("attacker got %q", got)
			}
		})
	}
}

func TestCoalescingOneNode(t *testing.T) {
	gate := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		<-gate
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "once")
	})
	const n = 50
	var wg sync.WaitGroup
	statuses := make(chan string, n)
	for range n {
		wg.Go(func() {
			w := f.do("GET", "http://example.com/hot")
			if body(w) != "once" {
				t.Errorf("body %q", body(w))
			}
			statuses <- cacheStatus(w)
		})
	}
	waitFor(t, "the origin call", func() bool { return f.calls() == 1 })
	close(gate)
	wg.Wait()
	close(statuses)
	count := map[string]int{}
	for s := range statuses {
		count[s]++
	}
	if got := f.calls(); got != 1 {
		t.Errorf("origin calls = %d, want 1", got)
	}
	if count["tiercache; fwd=uri-miss; stored"] != 1 {
		t.Errorf("statuses %v: want exactly one stored", count)
	}
}

// A response that may not be stored is not given to the requests that
// waited for it: each goes to the origin itself.
func TestCoalescedPassNotShared(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	n := 0
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		me := n
		mu.Unlock()
		if me == 1 {
			<-gate
		}
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprintf(w, "response %d", me)
	})
	var wg sync.WaitGroup
	bodies := make(chan string, 10)
	for range 10 {
		wg.Go(func() { bodies <- body(f.do("GET", "http://example.com/private")) })
	}
	waitFor(t, "the first origin call", func() bool { return f.calls() >= 1 })
	close(gate)
	wg.Wait()
	close(bodies)
	seen := map[string]bool{}
	for b := range bodies {
		if seen[b] {
			t.Errorf("%q given to two requests", b)
		}
		seen[b] = true
	}
	if got := f.calls(); got != 10 {
		t.Errorf("origin calls = %d, want 10", got)
	}
}
