package middleware_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
)

// stored reports whether a second request for target is a hit.
func stored(f *fixture, target string, hdr ...string) bool {
	f.do("GET", target, hdr...)
	return cacheStatus(f.do("GET", target, hdr...)) == "tiercache; hit"
}

// Age counts by its first value: "7200, 0" is 7200, older than max-age.
func TestAgeFirstValue(t *testing.T) {
	for _, ages := range [][]string{{"7200, 0"}, {"7200", "0"}} {
		f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=3600")
			w.Header()["Age"] = ages
			io.WriteString(w, "x")
		})
		if stored(f, "http://example.com/age") {
			t.Errorf("Age %q: stored as fresh", ages)
		}
	}
	f := newFixture(t, text("x", "Cache-Control", "max-age=3600", "Age", "100, 7200"))
	if !stored(f, "http://example.com/age") {
		t.Error(`Age "100, 7200": not stored`)
	}
	if got := f.do("GET", "http://example.com/age").Header().Get("Age"); got != "100" {
		t.Errorf("Age on the hit = %q, want 100", got)
	}
}

// Expires is parsed strictly; an invalid or repeated one means already
// expired. The same parser reads Date and If-Modified-Since.
func TestStrictDates(t *testing.T) {
	future := time.Date(2050, 8, 18, 2, 1, 18, 0, time.UTC) // the fixture clock is in 2030
	tests := []struct {
		name    string
		expires []string
		stored  bool
	}{
		{"valid", []string{future.Format(http.TimeFormat)}, true},
		{"double spaces", []string{"Thu, 18  Aug  2050 02:01:18 GMT"}, false},
		{"one-digit hour", []string{"Thu, 18 Aug 2050 2:01:18 GMT"}, false},
		{"two lines", []string{future.Format(http.TimeFormat), future.Format(http.TimeFormat)}, false},
		{"zero", []string{"0"}, false},
		{"wrong-case weekday", []string{"THU, 18 Aug 2050 02:01:18 GMT"}, true},
		{"wrong-case month", []string{"Thu, 18 AUG 2050 02:01:18 GMT"}, true},
		{"wrong-case zone", []string{"Thu, 18 Aug 2050 02:01:18 gMT"}, true},
		{"wrong-case rfc850", []string{"thursday, 18-aug-50 02:01:18 gmt"}, true},
		{"wrong-case asctime", []string{"thu aug 18 02:01:18 2050"}, true},
		{"UTC is not GMT", []string{"Thu, 18 Aug 2050 02:01:18 UTC"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Expires"] = tt.expires
				io.WriteString(w, "x")
			}, middleware.WithDefaultTTL(time.Hour)) // an invalid Expires is not "no Expires"
			if got := stored(f, "http://example.com/e"); got != tt.stored {
				t.Errorf("stored = %v, want %v", got, tt.stored)
			}
		})
	}
	t.Run("If-Modified-Since", func(t *testing.T) {
		lm := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
		f := newFixture(t, text("x", "Cache-Control", "max-age=60", "Last-Modified", lm.Format(http.TimeFormat)))
		f.do("GET", "http://example.com/ims")
		if w := f.do("GET", "http://example.com/ims", "If-Modified-Since", lm.Format(http.TimeFormat)); w.Code != 304 {
			t.Errorf("valid If-Modified-Since: %d, want 304", w.Code)
		}
		if w := f.do("GET", "http://example.com/ims", "If-Modified-Since", "Mon, 1  Jan  2029 00:00:00 GMT"); w.Code != 200 {
			t.Errorf("invalid If-Modified-Since: %d, want 200 (ignored)", w.Code)
		}
	})
}

// Any final status the cache understands is stored with explicit
// freshness; without it (a default TTL) only the heuristically cacheable
// ones are.
func TestStatuses(t *testing.T) {
	for _, tt := range []struct {
		code     int
		cc       string
		defTTL   bool
		isStored bool
	}{
		{302, "max-age=60", false, true},
		{307, "max-age=60", false, true},
		{303, "s-maxage=60", false, true},
		{500, "max-age=60", false, true},
		{403, "max-age=60", false, true},
		{404, "", true, true},
		{200, "", true, true},
		{302, "", true, false},
		{500, "", true, false},
		{206, "max-age=60", false, false},
		// A final status the cache does not know is stored with explicit
		// freshness (RFC 9111, Section 3), but not with must-understand.
		{299, "max-age=60", false, true},
		{499, "max-age=60", false, true},
		{599, "max-age=60", false, true},
		{599, "max-age=60, must-understand", false, false},
		{299, "max-age=60, must-understand, no-store", false, false},
		{599, "", true, false},
		{600, "max-age=60", false, false},
		// must-understand with a known status overrides no-store
		// (Section 5.2.2.3).
		{200, "max-age=60, must-understand, no-store", false, true},
		{404, "max-age=60, no-store, must-understand", false, true},
		{206, "max-age=60, must-understand", false, false},
		{200, "max-age=60, no-store", false, false},
	} {
		var opts []middleware.Option
		if tt.defTTL {
			opts = append(opts, middleware.WithDefaultTTL(time.Minute))
		}
		f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
			if tt.cc != "" {
				w.Header().Set("Cache-Control", tt.cc)
			}
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(tt.code)
		}, opts...)
		if got := stored(f, "http://example.com/s"); got != tt.isStored {
			t.Errorf("status %d, Cache-Control %q, default TTL %v: stored = %v, want %v", tt.code, tt.cc, tt.defTTL, got, tt.isStored)
		}
	}
}

// CDN-Cache-Control (RFC 9213) and the optional cache-specific field come
// before Cache-Control (and Expires); an invalid one is ignored.
func TestTargetedDirectives(t *testing.T) {
	type hdr = []string
	tests := []struct {
		name   string
		fields hdr
		opts   []middleware.Option
		fresh  time.Duration // 0: not stored
	}{
		{"CDN over no-store", hdr{"CDN-Cache-Control", "max-age=60", "Cache-Control", "no-store"}, nil, time.Minute},
		{"CDN no-store", hdr{"CDN-Cache-Control", "no-store", "Cache-Control", "max-age=60"}, nil, 0},
		{"CDN private", hdr{"CDN-Cache-Control", "private", "Cache-Control", "public, max-age=60"}, nil, 0},
		{"CDN over Expires", hdr{"CDN-Cache-Control", "max-age=10", "Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}, nil, 10 * time.Second},
		{"CDN without lifetime ignores Expires", hdr{"CDN-Cache-Control", "public", "Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}, nil, 0},
		{"CDN invalid", hdr{"CDN-Cache-Control", "max-age=10, @bad", "Cache-Control", "max-age=60"}, nil, time.Minute},
		{"CDN empty member", hdr{"CDN-Cache-Control", "max-age=10,,", "Cache-Control", "max-age=60"}, nil, time.Minute},
		// RFC 9213, Section 2.1: a value of the wrong type makes the field
		// invalid, so Cache-Control decides.
		{"CDN string max-age", hdr{"CDN-Cache-Control", `max-age="10000"`, "Cache-Control", "no-store"}, nil, 0},
		{"CDN string max-age, CC fresh", hdr{"CDN-Cache-Control", `max-age="10"`, "Cache-Control", "max-age=60"}, nil, time.Minute},
		{"CDN negative max-age", hdr{"CDN-Cache-Control", "max-age=-1", "Cache-Control", "max-age=60"}, nil, time.Minute},
		{"CDN decimal s-maxage", hdr{"CDN-Cache-Control", "s-maxage=1.5", "Cache-Control", "max-age=60"}, nil, time.Minute},
		{"CDN max-age without value", hdr{"CDN-Cache-Control", "max-age", "Cache-Control", "max-age=60"}, nil, time.Minute},
		{"CDN no-store with integer", hdr{"CDN-Cache-Control", "max-age=10, no-store=1", "Cache-Control", "max-age=60"}, nil, time.Minute},
		{"CDN no-store ?0 is absent", hdr{"CDN-Cache-Control", "max-age=10, no-store=?0", "Cache-Control", "no-store"}, nil, 10 * time.Second},
		{"CDN private field list", hdr{"CDN-Cache-Control", `max-age=10, private="x-a, x-b"`, "Cache-Control", "no-store"}, nil, 10 * time.Second},
		{"CDN private token", hdr{"CDN-Cache-Control", "max-age=10, private=x-a", "Cache-Control", "max-age=60"}, nil, time.Minute},
		{"CDN unknown directive with a string", hdr{"CDN-Cache-Control", `max-age=10, foo="bar, baz"`, "Cache-Control", "no-store"}, nil, 10 * time.Second},
		{"cache-specific first", hdr{"Tiercache-Cache-Control", "max-age=5", "CDN-Cache-Control", "max-age=60", "Cache-Control", "max-age=600"},
			[]middleware.Option{middleware.WithTargetedHeader("Tiercache-Cache-Control")}, 5 * time.Second},
		{"cache-specific unset", hdr{"Tiercache-Cache-Control", "max-age=5", "Cache-Control", "max-age=600"}, nil, 10 * time.Minute},
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
	if _, err := middleware.New(memCache(t), middleware.WithTargetedHeader("")); !errors.Is(err, middleware.ErrInvalidOption) {
		t.Errorf("WithTargetedHeader(\"\"): %v", err)
	}
}

// A chunked response that httputil.ReverseProxy flushes chunk by chunk is
// stored once its whole body arrived; an event stream still streams.
func TestChunkedBehindReverseProxy(t *testing.T) {
	chunk := strings.Repeat("c", 1000)
	rig := newProxyRig(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
		}
		for range 10 {
			io.WriteString(w, chunk)
			http.NewResponseController(w).Flush()
		}
	})
	resp, b := rig.get("GET", "/chunked")
	if len(b) != 10*len(chunk) || resp.ContentLength != -1 && resp.ContentLength != int64(len(b)) {
		t.Fatalf("first response: %d bytes", len(b))
	}
	if !strings.Contains(status(resp), "stored") {
		t.Errorf("chunked response: Cache-Status %q, want stored", status(resp))
	}
	if resp, b = rig.get("GET", "/chunked"); status(resp) != "tiercache; hit" || len(b) != 10*len(chunk) {
		t.Errorf("second request: %q, %d bytes; want a hit with the whole body", status(resp), len(b))
	}
	if got := rig.originCalls(); got != 1 {
		t.Errorf("origin calls %d, want 1", got)
	}
	resp, _ = rig.get("GET", "/sse")
	if strings.Contains(status(resp), "stored") {
		t.Errorf("event stream: Cache-Status %q, want it streamed, not stored", status(resp))
	}
}
