package middleware_test

import (
	"errors"
	"io"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
)

// heuristicFixture serves status with Date now and Last-Modified age ago
// (none when age is 0), plus the given header pairs.
func heuristicFixture(t *testing.T, status int, age time.Duration, hdr []string, opts ...middleware.Option) *fixture {
	t.Helper()
	clk := newClock()
	return newFixtureOn(t, memCache(t), clk, func(w http.ResponseWriter, r *http.Request) {
		now := clk.Now()
		w.Header().Set("Date", now.Format(http.TimeFormat))
		if age > 0 {
			w.Header().Set("Last-Modified", now.Add(-age).Format(http.TimeFormat))
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Add(hdr[i], hdr[i+1])
		}
		w.WriteHeader(status)
		if status != http.StatusNoContent {
			io.WriteString(w, "body")
		}
	}, opts...)
}

var heuristicOn = middleware.WithHeuristicFreshness(middleware.DefaultHeuristicFraction, middleware.DefaultHeuristicMax)

// With WithHeuristicFreshness, a response without explicit freshness lives
// 10 % of the time since its Last-Modified (RFC 9111, Section 4.2.2).
func TestHeuristicLifetime(t *testing.T) {
	f := heuristicFixture(t, 200, 10*time.Hour, nil, heuristicOn)
	if !stored(f, "http://example.com/h") {
		t.Fatal("not stored")
	}
	f.clock.Advance(59 * time.Minute)
	if got := cacheStatus(f.do("GET", "http://example.com/h")); got != "tiercache; hit" {
		t.Errorf("after 59 min of a 1 h heuristic lifetime: %q, want a hit", got)
	}
	f.clock.Advance(2 * time.Minute)
	if got := cacheStatus(f.do("GET", "http://example.com/h")); got == "tiercache; hit" {
		t.Errorf("after 61 min of a 1 h heuristic lifetime: still a hit")
	}
}

// The heuristic lifetime is capped.
func TestHeuristicCap(t *testing.T) {
	f := heuristicFixture(t, 200, 1000*24*time.Hour, nil, middleware.WithHeuristicFreshness(0.1, 2*time.Hour))
	if !stored(f, "http://example.com/h") {
		t.Fatal("not stored")
	}
	f.clock.Advance(2*time.Hour - time.Minute)
	if got := cacheStatus(f.do("GET", "http://example.com/h")); got != "tiercache; hit" {
		t.Errorf("1 min before the 2 h cap: %q, want a hit", got)
	}
	f.clock.Advance(2 * time.Minute)
	if got := cacheStatus(f.do("GET", "http://example.com/h")); got == "tiercache; hit" {
		t.Errorf("1 min after the 2 h cap (100 days of 10 %%): still a hit")
	}
}

// Which responses get a heuristic lifetime: heuristically cacheable status
// codes, or public; never without Last-Modified, never for requests with
// Authorization or Cookie unless public, never with Set-Cookie, never
// without the option.
func TestHeuristicApplies(t *testing.T) {
	type hdr = []string
	tests := []struct {
		name   string
		status int
		lmAge  time.Duration
		resp   hdr
		req    hdr
		opts   []middleware.Option
		want   bool
	}{
		{"200", 200, time.Hour, nil, nil, nil, true},
		{"203", 203, time.Hour, nil, nil, nil, true},
		{"204", 204, time.Hour, nil, nil, nil, true},
		{"404", 404, time.Hour, nil, nil, nil, true},
		{"405", 405, time.Hour, nil, nil, nil, true},
		{"410", 410, time.Hour, nil, nil, nil, true},
		{"414", 414, time.Hour, nil, nil, nil, true},
		{"501", 501, time.Hour, nil, nil, nil, true},
		{"201 not heuristically cacheable", 201, time.Hour, nil, nil, nil, false},
		{"403", 403, time.Hour, nil, nil, nil, false},
		{"502", 502, time.Hour, nil, nil, nil, false},
		{"503", 503, time.Hour, nil, nil, nil, false},
		{"599", 599, time.Hour, nil, nil, nil, false},
		{"599 public", 599, time.Hour, hdr{"Cache-Control", "public"}, nil, nil, true},
		{"no Last-Modified", 200, 0, nil, nil, nil, false},
		{"Authorization", 200, time.Hour, nil, hdr{"Authorization", "Bearer a"}, nil, false},
		{"Authorization, public", 200, time.Hour, hdr{"Cache-Control", "public"}, hdr{"Authorization", "Bearer a"}, nil, true},
		{"Authorization, must-revalidate", 200, time.Hour, hdr{"Cache-Control", "must-revalidate"}, hdr{"Authorization", "Bearer a"}, nil, false},
		{"Cookie", 200, time.Hour, nil, hdr{"Cookie", "session=1"}, nil, false},
		{"Cookie, public", 200, time.Hour, hdr{"Cache-Control", "public"}, hdr{"Cookie", "session=1"}, nil, true},
		{"Set-Cookie", 200, time.Hour, hdr{"Set-Cookie", "a=b"}, nil, nil, false},
		{"Set-Cookie, public", 200, time.Hour, hdr{"Cache-Control", "public", "Set-Cookie", "a=b"}, nil, nil, false},
		{"no-cache", 200, time.Hour, hdr{"Cache-Control", "no-cache"}, nil, nil, false},
		{"Last-Modified invalid", 200, 0, hdr{"Last-Modified", "yesterday"}, nil, nil, false},
		{"Last-Modified after Date", 200, 0, hdr{"Last-Modified", "Fri, 01 Jan 2100 00:00:00 GMT"}, nil, nil, false},
		{"option off", 200, time.Hour, nil, nil, []middleware.Option{}, false},
		{"default TTL without Last-Modified", 200, 0, nil, nil, []middleware.Option{heuristicOn, middleware.WithDefaultTTL(time.Minute)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts == nil {
				opts = []middleware.Option{heuristicOn}
			}
			f := heuristicFixture(t, tt.status, tt.lmAge, tt.resp, opts...)
			if got := stored(f, "http://example.com/h", tt.req...); got != tt.want {
				t.Errorf("stored = %v, want %v", got, tt.want)
			}
		})
	}
}

// With a Last-Modified the heuristic lifetime wins over WithDefaultTTL.
func TestHeuristicOverDefaultTTL(t *testing.T) {
	f := heuristicFixture(t, 200, 10*time.Minute, nil, heuristicOn, middleware.WithDefaultTTL(time.Hour))
	if !stored(f, "http://example.com/h") {
		t.Fatal("not stored")
	}
	f.clock.Advance(61 * time.Second) // 10 % of 10 min is 60 s
	if got := cacheStatus(f.do("GET", "http://example.com/h")); got == "tiercache; hit" {
		t.Errorf("61 s into a 60 s heuristic lifetime: a hit (the default TTL used?)")
	}
}

func TestHeuristicOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		frac float64
		max  time.Duration
	}{
		{0, time.Hour}, {-0.1, time.Hour}, {1.5, time.Hour}, {math.NaN(), time.Hour}, {0.1, 0}, {0.1, -time.Second},
	} {
		if _, err := middleware.New(memCache(t), middleware.WithHeuristicFreshness(tt.frac, tt.max)); !errors.Is(err, middleware.ErrInvalidOption) {
			t.Errorf("WithHeuristicFreshness(%v, %v): %v, want ErrInvalidOption", tt.frac, tt.max, err)
		}
	}
	if _, err := middleware.New(memCache(t), middleware.WithHeuristicFreshness(1, time.Second)); err != nil {
		t.Errorf("WithHeuristicFreshness(1, 1s): %v", err)
	}
}
