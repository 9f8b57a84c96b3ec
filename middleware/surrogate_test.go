package middleware_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
)

// Surrogate-Control, with WithSurrogateControl("tc"): the directives for
// this cache's token, else the untargeted ones, decide ahead of
// CDN-Cache-Control, Cache-Control and Expires when they give max-age or
// no-store; anything else leaves the field ignored.
func TestSurrogateControl(t *testing.T) {
	type hdr = []string
	on := []middleware.Option{middleware.WithSurrogateControl("tc")}
	tests := []struct {
		name   string
		fields hdr
		opts   []middleware.Option
		fresh  time.Duration // 0: not stored
	}{
		{"off by default", hdr{"Surrogate-Control", "max-age=60", "Cache-Control", "max-age=10"}, nil, 10 * time.Second},
		{"off: no-store ignored", hdr{"Surrogate-Control", "no-store", "Cache-Control", "max-age=10"}, nil, 10 * time.Second},
		{"max-age alone", hdr{"Surrogate-Control", "max-age=60"}, on, time.Minute},
		{"over Cache-Control no-store", hdr{"Surrogate-Control", "max-age=60", "Cache-Control", "no-store"}, on, time.Minute},
		{"over a longer Cache-Control", hdr{"Surrogate-Control", "max-age=5", "Cache-Control", "max-age=3600"}, on, 5 * time.Second},
		{"over a past Expires", hdr{"Surrogate-Control", "max-age=60", "Expires", "Thu, 01 Jan 1970 00:00:00 GMT"}, on, time.Minute},
		{"no-store over Cache-Control", hdr{"Surrogate-Control", "no-store", "Cache-Control", "max-age=600"}, on, 0},
		{"targeted at this cache", hdr{"Surrogate-Control", "max-age=60;tc"}, on, time.Minute},
		{"targeted wins over untargeted", hdr{"Surrogate-Control", "max-age=600, max-age=5;tc"}, on, 5 * time.Second},
		{"targeted no-store wins", hdr{"Surrogate-Control", "max-age=600, no-store;tc"}, on, 0},
		{"token case-free", hdr{"Surrogate-Control", "max-age=60;TC"}, on, time.Minute},
		{"targeted at another", hdr{"Surrogate-Control", "max-age=600;cdn", "Cache-Control", "max-age=10"}, on, 10 * time.Second},
		{"no-store for another", hdr{"Surrogate-Control", "no-store;cdn", "Cache-Control", "max-age=10"}, on, 10 * time.Second},
		{"names case-free", hdr{"Surrogate-Control", "MaX-aGe=60"}, on, time.Minute},
		{"extension directive", hdr{"Surrogate-Control", `foo, content="ESI/1.0", max-age=60`}, on, time.Minute},
		{"two lines", hdr{"Surrogate-Control", "foo", "Surrogate-Control", "max-age=60"}, on, time.Minute},
		{"capped", hdr{"Surrogate-Control", "max-age=99999999999"}, on, 1 << 31 * time.Second},
		{"max-age=0", hdr{"Surrogate-Control", "max-age=0", "Cache-Control", "max-age=600"}, on, 0},
		{"content only: Cache-Control decides", hdr{"Surrogate-Control", `content="ESI/1.0"`, "Cache-Control", "max-age=10"}, on, 10 * time.Second},
		{"no-store-remote does not apply", hdr{"Surrogate-Control", "no-store-remote", "Cache-Control", "max-age=10"}, on, 10 * time.Second},
		{"space before =: ignored", hdr{"Surrogate-Control", "max-age =600", "Cache-Control", "max-age=10"}, on, 10 * time.Second},
		{"space after =: ignored", hdr{"Surrogate-Control", "max-age= 600", "Cache-Control", "max-age=10"}, on, 10 * time.Second},
		{"unterminated string: ignored", hdr{"Surrogate-Control", `max-age=600, content="x`, "Cache-Control", "max-age=10"}, on, 10 * time.Second},
		{"bad max-age: stale", hdr{"Surrogate-Control", "max-age=1.5", "Cache-Control", "max-age=600"}, on, 0},
		{"contradictory max-age: stale", hdr{"Surrogate-Control", "max-age=60, max-age=600"}, on, 0},
		{"cache-specific field first", hdr{"Tiercache-Cache-Control", "max-age=5", "Surrogate-Control", "max-age=60"},
			[]middleware.Option{middleware.WithSurrogateControl("tc"), middleware.WithTargetedHeader("Tiercache-Cache-Control")}, 5 * time.Second},
		{"before CDN-Cache-Control", hdr{"Surrogate-Control", "max-age=5", "CDN-Cache-Control", "max-age=60"}, on, 5 * time.Second},
		{"CDN-Cache-Control when it does not decide", hdr{"Surrogate-Control", "foo", "CDN-Cache-Control", "max-age=60"}, on, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, text("x", tt.fields...), tt.opts...)
			isStored := stored(f, "http://example.com/t")
			if isStored != (tt.fresh > 0) {
				t.Fatalf("stored = %v, want %v", isStored, tt.fresh > 0)
			}
			if tt.fresh == 0 {
				return
			}
			f.clock.Advance(tt.fresh - time.Second)
			if got := cacheStatus(f.do("GET", "http://example.com/t")); got != "tiercache; hit" {
				t.Errorf("1 s before the lifetime ends: %q", got)
			}
			f.clock.Advance(2 * time.Second)
			if got := cacheStatus(f.do("GET", "http://example.com/t")); got == "tiercache; hit" {
				t.Errorf("1 s after the lifetime ends: %q", got)
			}
		})
	}
	for _, token := range []string{"", "a b", "tc;x", `"tc"`} {
		if _, err := middleware.New(memCache(t), middleware.WithSurrogateControl(token)); !errors.Is(err, middleware.ErrInvalidOption) {
			t.Errorf("WithSurrogateControl(%q): %v, want ErrInvalidOption", token, err)
		}
	}
}

// max-age=N+M: the M seconds after N are a stale-if-error window: the stale
// response answers while the origin fails, not while it answers.
func TestSurrogateGrace(t *testing.T) {
	var fail atomic.Bool
	var n atomic.Int64
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		v := n.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Surrogate-Control", "max-age=10+60")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "v%d", v)
	}, middleware.WithSurrogateControl("tc"))
	f.do("GET", "http://example.com/up")   // v1
	f.do("GET", "http://example.com/down") // v2
	f.clock.Advance(20 * time.Second)
	if w := f.do("GET", "http://example.com/up"); body(w) != "v3" {
		t.Errorf("origin up past max-age: %q %q, want the new v3", body(w), cacheStatus(w))
	}
	fail.Store(true)
	if w := f.do("GET", "http://example.com/down"); w.Code != 200 || body(w) != "v2" || cacheStatus(w) != "tiercache; fwd=stale; detail=stale-if-error" {
		t.Errorf("origin down within the grace: %d %q %q, want the stale v2", w.Code, body(w), cacheStatus(w))
	}
	f.clock.Advance(60 * time.Second)
	if w := f.do("GET", "http://example.com/down"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("origin down past the grace: %d, want 503", w.Code)
	}
}

// Requests to the origin carry Surrogate-Capability with the token,
// appended to what the request carried, on loads, refreshes and forwarded
// requests; the client's header is left as it was.
func TestSurrogateCapability(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, fmt.Sprint(r.Header["Surrogate-Capability"]))
		mu.Unlock()
		w.Header().Set("Etag", `"1"`)
		w.Header().Set("Cache-Control", "max-age=10")
		io.WriteString(w, "x")
	}, middleware.WithSurrogateControl("tc"))
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}
	r, _ := http.NewRequest("GET", "http://example.com/c", nil)
	r.Header.Set("Surrogate-Capability", `cdn="ESI/1.0"`)
	f.h.ServeHTTP(discard{}, r) // load
	if got, want := last(), `[cdn="ESI/1.0", tc="Surrogate/1.0"]`; got != want {
		t.Errorf("load: origin saw %s, want %s", got, want)
	}
	if got := r.Header["Surrogate-Capability"]; len(got) != 1 || got[0] != `cdn="ESI/1.0"` {
		t.Errorf("the client's header changed: %q", got)
	}
	f.clock.Advance(20 * time.Second)
	f.do("GET", "http://example.com/c") // refresh (conditional)
	if got, want := last(), `[tc="Surrogate/1.0"]`; got != want {
		t.Errorf("refresh: origin saw %s, want %s", got, want)
	}
	f.do("GET", "http://example.com/c", "Cache-Control", "no-store") // forwarded
	if got, want := last(), `[tc="Surrogate/1.0"]`; got != want {
		t.Errorf("forward: origin saw %s, want %s", got, want)
	}

	plain := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Surrogate-Capability"]; ok {
			t.Errorf("without the option the origin saw Surrogate-Capability %q", r.Header["Surrogate-Capability"])
		}
	})
	plain.do("GET", "http://example.com/c")
}

// A request with Authorization still gets a response stored only when it
// says public, s-maxage or must-revalidate (RFC 9111, Section 3.5):
// Surrogate-Control's max-age is not such a mark.
func TestSurrogateAuthorization(t *testing.T) {
	f := newFixture(t, text("for alice", "Surrogate-Control", "max-age=600"), middleware.WithSurrogateControl("tc"))
	f.do("GET", "http://example.com/me", "Authorization", "Bearer alice")
	if got := cacheStatus(f.do("GET", "http://example.com/me", "Authorization", "Bearer bob")); got == "tiercache; hit" {
		t.Errorf("a response to Authorization was stored and served: %q", got)
	}
	if f.calls() != 2 {
		t.Errorf("origin calls = %d, want 2", f.calls())
	}
}

// discard is a ResponseWriter that drops everything.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}
