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
	"github.com/tiercache/tiercache/tiered"
)

func TestHitMiss(t *testing.T) {
	f := newFixture(t, text("hello", "Cache-Control", "max-age=60", "Content-Type", "text/plain"))
	w := f.do("GET", "http://example.com/a")
	if got, want := body(w), "hello"; got != want {
		t.Fatalf("body = %q, want %q", got, want)
	}
	if got, want := cacheStatus(w), "tiercache; fwd=uri-miss; stored"; got != want {
		t.Errorf("first Cache-Status = %q, want %q", got, want)
	}
	f.clock.Advance(5 * time.Second)
	w = f.do("GET", "http://example.com/a")
	if got, want := body(w), "hello"; got != want {
		t.Fatalf("body = %q, want %q", got, want)
	}
	if got, want := cacheStatus(w), "tiercache; hit"; got != want {
		t.Errorf("second Cache-Status = %q, want %q", got, want)
	}
	if got, want := w.Header().Get("Age"), "5"; got != want {
		t.Errorf("Age = %q, want %q", got, want)
	}
	if got, want := w.Header().Get("Content-Length"), "5"; got != want {
		t.Errorf("Content-Length = %q, want %q", got, want)
	}
	if got, want := w.Header().Get("Content-Type"), "text/plain"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	if w.Header().Get("Date") == "" {
		t.Error("no Date on a hit")
	}
	if got := f.calls(); got != 1 {
		t.Errorf("origin calls = %d, want 1", got)
	}
	// Expired: goes to the origin again.
	f.clock.Advance(60 * time.Second)
	w = f.do("GET", "http://example.com/a")
	if got, want := cacheStatus(w), "tiercache; fwd=stale; stored"; got != want {
		t.Errorf("expired Cache-Status = %q, want %q", got, want)
	}
	if got := f.calls(); got != 2 {
		t.Errorf("origin calls = %d, want 2", got)
	}
	w = f.do("GET", "http://example.com/a")
	if got, want := cacheStatus(w), "tiercache; hit"; got != want {
		t.Errorf("after refresh Cache-Status = %q, want %q", got, want)
	}
	if got := f.calls(); got != 2 {
		t.Errorf("origin calls = %d, want 2", got)
	}
}

func TestKeyParts(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "%s %s %s", r.Host, r.URL.Path, r.URL.RawQuery)
	}, middleware.WithIgnoredQueryParams("utm_*", "fbclid"))
	tests := []struct {
		target string
		want   string // body
		hit    bool
	}{
		{"http://a.example/p?x=1&y=2", "a.example /p x=1&y=2", false},
		{"http://a.example/p?y=2&x=1", "a.example /p x=1&y=2", true}, // sorted query
		{"http://A.EXAMPLE:80/p?x=1&y=2", "a.example /p x=1&y=2", true},
		{"http://a.example/p?x=1&y=2&utm_source=mail&fbclid=9", "a.example /p x=1&y=2", true},
		{"http://b.example/p?x=1&y=2", "b.example /p x=1&y=2", false},
		{"http://a.example/q?x=1&y=2", "a.example /q x=1&y=2", false},
		{"http://a.example/p?x=2&y=2", "a.example /p x=2&y=2", false},
		{"https://a.example/p?x=1&y=2", "a.example /p x=1&y=2", false},
		{"http://a.example/p?utm_medium=x", "a.example /p ", false}, // the handler never sees utm_*
		{"http://a.example/p?x=1&x=2", "a.example /p x=1&x=2", false},
		{"http://a.example/p?x=2&x=1", "a.example /p x=2&x=1", false}, // repeated names keep their order
	}
	for _, tt := range tests {
		w := f.do("GET", tt.target)
		if got := body(w); got != tt.want {
			t.Errorf("GET %s: body %q, want %q", tt.target, got, tt.want)
		}
		if got := cacheStatus(w) == "tiercache; hit"; got != tt.hit {
			t.Errorf("GET %s: hit = %v (%s), want %v", tt.target, got, cacheStatus(w), tt.hit)
		}
	}
}

func TestHead(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" {
			t.Errorf("the origin got a %s, want the GET a HEAD miss loads", r.Method)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", `"v1"`)
		io.WriteString(w, "0123456789")
	})
	// A HEAD miss loads (and stores) the GET response, without sending
	// its body.
	w := f.do("HEAD", "http://example.com/h")
	if got, want := cacheStatus(w), "tiercache; fwd=uri-miss; stored"; got != want {
		t.Errorf("HEAD miss Cache-Status = %q, want %q", got, want)
	}
	if got := w.Body.Len(); got != 0 {
		t.Errorf("HEAD miss body has %d bytes, want 0", got)
	}
	w = f.do("GET", "http://example.com/h")
	if got, want := cacheStatus(w), "tiercache; hit"; got != want {
		t.Errorf("GET Cache-Status = %q, want %q", got, want)
	}
	if got := body(w); got != "0123456789" {
		t.Errorf("GET body %q", got)
	}
	// HEAD is answered from the GET's entry, without a body.
	w = f.do("HEAD", "http://example.com/h")
	if got, want := cacheStatus(w), "tiercache; hit"; got != want {
		t.Errorf("HEAD hit Cache-Status = %q, want %q", got, want)
	}
	if got := w.Body.Len(); got != 0 {
		t.Errorf("HEAD body has %d bytes, want 0", got)
	}
	if got, want := w.Header().Get("Content-Length"), "10"; got != want {
		t.Errorf("HEAD Content-Length = %q, want %q", got, want)
	}
	if got := f.calls(); got != 1 {
		t.Errorf("origin calls = %d, want 1", got)
	}
}

func TestConditional(t *testing.T) {
	lm := time.Date(2029, 5, 6, 7, 8, 9, 0, time.UTC)
	f := newFixture(t, text("body", "Cache-Control", "max-age=60", "Etag", `W/"abc"`,
		"Last-Modified", lm.Format(http.TimeFormat), "Content-Type", "text/plain"))
	f.do("GET", "http://example.com/c")
	tests := []struct {
		name string
		hdr  []string
		want int
	}{
		{"strong tag matches weak (weak comparison)", []string{"If-None-Match", `"abc"`}, 304},
		{"weak tag", []string{"If-None-Match", `W/"abc"`}, 304},
		{"in a list", []string{"If-None-Match", `"x", W/"abc"`}, 304},
		{"star", []string{"If-None-Match", `*`}, 304},
		{"other tag", []string{"If-None-Match", `"abd"`}, 200},
		{"malformed", []string{"If-None-Match", `abc`}, 200},
		{"not modified since", []string{"If-Modified-Since", lm.Format(http.TimeFormat)}, 304},
		{"modified since", []string{"If-Modified-Since", lm.Add(-time.Second).Format(http.TimeFormat)}, 200},
		{"If-None-Match wins over If-Modified-Since", []string{"If-None-Match", `"zzz"`, "If-Modified-Since", lm.Format(http.TimeFormat)}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do("GET", "http://example.com/c", tt.hdr...)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if got, want := cacheStatus(w), "tiercache; hit"; got != want {
				t.Errorf("Cache-Status = %q, want %q", got, want)
			}
			if tt.want == 304 {
				if w.Body.Len() != 0 {
					t.Errorf("304 with a body")
				}
				if got := w.Header().Get("Etag"); got != `W/"abc"` {
					t.Errorf("304 ETag = %q", got)
				}
				if got := w.Header().Get("Content-Type"); got != "" {
					t.Errorf("304 carries Content-Type %q", got)
				}
			}
		})
	}
	if got := f.calls(); got != 1 {
		t.Errorf("origin calls = %d, want 1", got)
	}
}

// The request that loads a response sends the origin no validators (it
// wants a full response to store) and gets a 304 itself if they match.
func TestConditionalMiss(t *testing.T) {
	var sawINM []string
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		sawINM = append(sawINM, r.Header.Get("If-None-Match"))
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", `"v"`)
		io.WriteString(w, "x")
	})
	w := f.do("GET", "http://example.com/cm", "If-None-Match", `"v"`)
	if w.Code != 304 {
		t.Errorf("status %d, want 304", w.Code)
	}
	if got, want := cacheStatus(w), "tiercache; fwd=uri-miss; stored"; got != want {
		t.Errorf("Cache-Status = %q, want %q", got, want)
	}
	if len(sawINM) != 1 || sawINM[0] != "" {
		t.Errorf("origin saw If-None-Match %q, want none", sawINM)
	}
	if w := f.do("GET", "http://example.com/cm"); w.Code != 200 || body(w) != "x" {
		t.Errorf("then GET: %d %q, want 200 \"x\"", w.Code, body(w))
	}
}

func TestFreshness(t *testing.T) {
	tests := []struct {
		name  string
		hdr   []string
		fresh time.Duration // 0: not stored
		opts  []middleware.Option
	}{
		{"max-age", []string{"Cache-Control", "max-age=10"}, 10 * time.Second, nil},
		{"s-maxage wins", []string{"Cache-Control", "max-age=10, s-maxage=30"}, 30 * time.Second, nil},
		{"Expires minus Date", []string{"Date", "Wed, 02 Jan 2030 03:04:05 GMT", "Expires", "Wed, 02 Jan 2030 03:04:25 GMT"}, 20 * time.Second, nil},
		{"max-age wins over Expires", []string{"Cache-Control", "max-age=5", "Expires", "Wed, 02 Jan 2030 04:04:25 GMT"}, 5 * time.Second, nil},
		{"Age counts", []string{"Cache-Control", "max-age=10", "Age", "4"}, 6 * time.Second, nil},
		{"old Date counts", []string{"Cache-Control", "max-age=10", "Date", "Wed, 02 Jan 2030 03:04:02 GMT"}, 7 * time.Second, nil},
		{"invalid Expires is stale", []string{"Expires", "0"}, 0, nil},
		{"nothing said", nil, 0, nil},
		{"nothing said, default TTL", nil, 15 * time.Second, []middleware.Option{middleware.WithDefaultTTL(15 * time.Second)}},
		{"max-age=0", []string{"Cache-Control", "max-age=0"}, 0, nil},
		{"repeated max-age is stale", []string{"Cache-Control", "max-age=10, max-age=20"}, 0, nil},
		{"quoted max-age", []string{"Cache-Control", `max-age="10"`}, 10 * time.Second, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, text("x", tt.hdr...), tt.opts...)
			w := f.do("GET", "http://example.com/f")
			stored := strings.HasSuffix(cacheStatus(w), "stored")
			if stored != (tt.fresh > 0) {
				t.Fatalf("Cache-Status %q; want stored = %v", cacheStatus(w), tt.fresh > 0)
			}
			if tt.fresh == 0 {
				return
			}
			f.clock.Advance(tt.fresh - time.Millisecond)
			if got := cacheStatus(f.do("GET", "http://example.com/f")); got != "tiercache; hit" {
				t.Errorf("just before expiry: Cache-Status %q, want a hit", got)
			}
			f.clock.Advance(time.Millisecond)
			// (A static Date or Expires makes the reloaded copy stale at once.)
			if got := cacheStatus(f.do("GET", "http://example.com/f")); !strings.HasPrefix(got, "tiercache; fwd=stale") {
				t.Errorf("at expiry: Cache-Status %q, want fwd=stale", got)
			}
		})
	}
}

// Every rule that forbids storing a response.
func TestNeverStored(t *testing.T) {
	big := strings.Repeat("x", 2048)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		reqHdr  []string
		method  string
	}{
		{"response no-store", text("x", "Cache-Control", "max-age=60, no-store"), nil, ""},
		{"response private", text("x", "Cache-Control", "private, max-age=60"), nil, ""},
		{"response no-cache", text("x", "Cache-Control", "no-cache, max-age=60"), nil, ""},
		{"Set-Cookie", text("x", "Cache-Control", "max-age=60", "Set-Cookie", "s=1"), nil, ""},
		{"Vary: *", text("x", "Cache-Control", "max-age=60", "Vary", "*"), nil, ""},
		{"Vary list with *", text("x", "Cache-Control", "max-age=60", "Vary", "Accept, *"), nil, ""},
		{"request no-store", text("x", "Cache-Control", "max-age=60"), []string{"Cache-Control", "no-store"}, ""},
		{"body over the cap", text(big, "Cache-Control", "max-age=60"), nil, ""},
		{"status 206", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(206)
		}, nil, ""},
		{"streamed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "part")
			http.NewResponseController(w).Flush()
			io.WriteString(w, "rest")
		}, nil, ""},
		{"Authorization without public", text("x", "Cache-Control", "max-age=60"), []string{"Authorization", "Bearer a"}, ""},
		{"trailers", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "x")
			w.Header().Set("X-Sum", "1")
		}, nil, ""},
		{"POST", text("x", "Cache-Control", "max-age=60"), nil, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler, middleware.WithMaxBodyBytes(1024))
			method := tt.method
			if method == "" {
				method = "GET"
			}
			w := f.do(method, "http://example.com/n", tt.reqHdr...)
			if strings.Contains(cacheStatus(w), "stored") {
				t.Errorf("Cache-Status %q says stored", cacheStatus(w))
			}
			for range 2 {
				w = f.do(method, "http://example.com/n", tt.reqHdr...)
				if strings.Contains(cacheStatus(w), "; hit") {
					t.Errorf("Cache-Status %q: served from the cache", cacheStatus(w))
				}
			}
			if method != "GET" {
				w = f.do("GET", "http://example.com/n")
				if strings.Contains(cacheStatus(w), "; hit") {
					t.Errorf("GET after %s: Cache-Status %q", method, cacheStatus(w))
				}
			}
			if got := f.calls(); got < 3 {
				t.Errorf("origin calls = %d, want >= 3", got)
			}
		})
	}
}

func TestBodyCapStreamsThrough(t *testing.T) {
	big := strings.Repeat("0123456789", 500) // 5000 bytes
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		for i := 0; i < len(big); i += 100 {
			io.WriteString(w, big[i:i+100])
		}
	}, middleware.WithMaxBodyBytes(1000))
	// The second request knows the URL is not storable (hit-for-pass).
	for _, want := range []string{"tiercache; fwd=uri-miss", "tiercache; fwd=uri-miss; detail=hit-for-pass"} {
		w := f.do("GET", "http://example.com/big")
		if got := body(w); got != big {
			t.Fatalf("body has %d bytes, want %d", len(got), len(big))
		}
		if got := cacheStatus(w); got != want {
			t.Errorf("Cache-Status = %q, want %q", got, want)
		}
	}
	if got := f.calls(); got != 2 {
		t.Errorf("origin calls = %d, want 2", got)
	}
}

// A streamed response reaches the client as the handler flushes it, and
// http.ResponseController works through the wrapper.
func TestStreamingPassthrough(t *testing.T) {
	step := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil && r.URL.RawQuery == "" {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		<-step // the client has the first event before the handler goes on
		io.WriteString(w, "data: 2\n\n")
	})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 9)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "data: 1\n\n" {
		t.Fatalf("first event %q", buf)
	}
	if got, want := resp.Header.Get("Cache-Status"), "tiercache; fwd=uri-miss"; got != want {
		t.Errorf("Cache-Status = %q, want %q", got, want)
	}
	close(step)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "data: 2\n\n" {
		t.Errorf("rest %q", rest)
	}
	if got := cacheStatus(f.do("GET", srv.URL+"/events?again")); strings.Contains(got, "hit") {
		t.Errorf("streamed response served from the cache: %q", got)
	}
}

func TestUpgradeBypasses(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhi")
		rw.Flush()
	})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hi" {
		t.Errorf("upgraded stream %q, want \"hi\"", b)
	}
}

func TestRequestDirectives(t *testing.T) {
	n := 0
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, n)
	})
	f.do("GET", "http://example.com/r")
	f.clock.Advance(20 * time.Second)
	tests := []struct {
		cc, status, body string
	}{
		{"", "tiercache; hit", "1"},
		{"max-age=30", "tiercache; hit", "1"},
		{"min-fresh=30", "tiercache; hit", "1"},
		{"no-cache", "tiercache; fwd=request; stored", "2"},
		{"", "tiercache; hit", "2"},
		{"max-age=0", "tiercache; fwd=request; stored", "3"},
	}
	for _, tt := range tests {
		var hdr []string
		if tt.cc != "" {
			hdr = []string{"Cache-Control", tt.cc}
		}
		w := f.do("GET", "http://example.com/r", hdr...)
		if got := cacheStatus(w); got != tt.status {
			t.Errorf("Cache-Control %q: Cache-Status %q, want %q", tt.cc, got, tt.status)
		}
		if got := body(w); got != tt.body {
			t.Errorf("Cache-Control %q: body %q, want %q", tt.cc, got, tt.body)
		}
	}
	f.clock.Advance(40 * time.Second)
	if w := f.do("GET", "http://example.com/r", "Cache-Control", "max-age=10"); body(w) != "4" {
		t.Errorf("max-age=10 on an entry 40s old: body %q, want a new one", body(w))
	}
	f.clock.Advance(2 * time.Second)
	if w := f.do("GET", "http://example.com/r", "Cache-Control", "min-fresh=59"); body(w) != "5" {
		t.Errorf("min-fresh=59 on an entry with 58s left: body %q (%d %s), want a new one", body(w), w.Code, cacheStatus(w))
	}
	if w := f.do("GET", "http://example.com/other", "Cache-Control", "only-if-cached"); w.Code != 504 {
		t.Errorf("only-if-cached miss: status %d, want 504", w.Code)
	}
}

func TestIgnoreRequestDirectives(t *testing.T) {
	f := newFixture(t, text("x", "Cache-Control", "max-age=60"), middleware.WithRequestDirectives(false))
	f.do("GET", "http://example.com/i")
	for _, cc := range []string{"no-cache", "max-age=0", "no-store"} {
		if got := cacheStatus(f.do("GET", "http://example.com/i", "Cache-Control", cc)); got != "tiercache; hit" {
			t.Errorf("Cache-Control %s: Cache-Status %q, want a hit", cc, got)
		}
	}
	if got := f.calls(); got != 1 {
		t.Errorf("origin calls = %d, want 1", got)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	c := memCache(t)
	tests := []struct {
		name string
		opt  middleware.Option
	}{
		{"negative default TTL", middleware.WithDefaultTTL(-1)},
		{"zero body cap", middleware.WithMaxBodyBytes(0)},
		{"empty ignored param", middleware.WithIgnoredQueryParams("")},
		{"bad key header", middleware.WithKeyHeaders("a b")},
		{"bad tag header", middleware.WithTagHeader("")},
		{"bad cache name", middleware.WithCacheName("1x")},
		{"nil clock", middleware.WithClock(nil)},
		{"nil error handler", middleware.WithErrorHandler(nil)},
		{"zero refreshes", middleware.WithMaxRefreshes(0)},
		{"nil meter provider", middleware.WithMeterProvider(nil)},
		{"nil option", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := middleware.New(c, tt.opt); !errors.Is(err, middleware.ErrInvalidOption) {
				t.Errorf("New: %v, want ErrInvalidOption", err)
			}
		})
	}
	if _, err := middleware.New(nil); !errors.Is(err, middleware.ErrInvalidOption) {
		t.Errorf("New(nil): %v, want ErrInvalidOption", err)
	}
	_ = tiered.ErrClosed
}
