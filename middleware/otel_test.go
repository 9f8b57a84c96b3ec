package middleware_test

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/tiered"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meterRig is an SDK meter provider with a manual reader.
type meterRig struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newMeterRig(t testing.TB) *meterRig {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return &meterRig{reader: reader, mp: mp}
}

// counts collects the middleware's counters: name, or name/attribute value
// for the attributed ones, to value. Every point must carry the cache name.
func (r *meterRig) counts(t testing.TB, cache string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != middleware.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality {
				t.Fatalf("%s: %T, want a cumulative monotonic int64 sum", m.Name, m.Data)
			}
			for _, p := range sum.DataPoints {
				if v, _ := p.Attributes.Value(tiered.AttrCache); v.AsString() != cache {
					t.Errorf("%s: %s = %q, want %q", m.Name, tiered.AttrCache, v.AsString(), cache)
				}
				key := m.Name
				for _, k := range []attribute.Key{middleware.AttrCacheStatus, middleware.AttrReason} {
					if v, ok := p.Attributes.Value(k); ok {
						key += "/" + v.AsString()
					}
				}
				out[key] = p.Value
			}
		}
	}
	return out
}

// TestMetrics walks a middleware through every kind of answer and checks
// the whole set of counters after each step.
func TestMetrics(t *testing.T) {
	rig := newMeterRig(t)
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/private":
			w.Header().Set("Cache-Control", "private")
		case "/swr":
			w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		default:
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Surrogate-Key", "a")
		}
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "body")
	}, middleware.WithMeterProvider(rig.mp))

	want := map[string]int64{}
	for _, o := range []string{"hit", "revalidated", "stale", "collapsed", "miss", "uncacheable", "bypass"} {
		want["tiercache.http.requests/"+o] = 0
	}
	for _, r := range []string{"unsafe_method", "purge", "purge_tag"} {
		want["tiercache.http.invalidations/"+r] = 0
	}
	want["tiercache.http.stored"] = 0
	if got := rig.counts(t, "http"); !maps.Equal(got, want) {
		t.Fatalf("before any request:\n got %v\nwant %v", got, want)
	}

	const u = "http://example.com/page"
	steps := []struct {
		name   string
		do     func() string // returns the Cache-Status
		status string
		delta  map[string]int64
	}{
		{"miss", func() string { return cacheStatus(f.do("GET", u)) }, "tiercache; fwd=uri-miss; stored",
			map[string]int64{"tiercache.http.requests/miss": 1, "tiercache.http.stored": 1}},
		{"hit", func() string { return cacheStatus(f.do("GET", u)) }, "tiercache; hit",
			map[string]int64{"tiercache.http.requests/hit": 1}},
		{"hit HEAD", func() string { return cacheStatus(f.do("HEAD", u)) }, "tiercache; hit",
			map[string]int64{"tiercache.http.requests/hit": 1}},
		{"304", func() string {
			w := f.do("GET", u, "If-None-Match", `"v1"`)
			if w.Code != http.StatusNotModified {
				t.Errorf("status %d, want 304", w.Code)
			}
			return cacheStatus(w)
		}, "tiercache; hit", map[string]int64{"tiercache.http.requests/revalidated": 1}},
		{"bypass Upgrade", func() string { return cacheStatus(f.do("GET", u, "Upgrade", "websocket")) }, "tiercache; fwd=bypass",
			map[string]int64{"tiercache.http.requests/bypass": 1}},
		{"request no-cache", func() string { return cacheStatus(f.do("GET", u, "Cache-Control", "no-cache")) }, "tiercache; fwd=request; stored",
			map[string]int64{"tiercache.http.requests/miss": 1, "tiercache.http.stored": 1}},
		{"not storable", func() string { return cacheStatus(f.do("GET", "http://example.com/private")) }, "tiercache; fwd=uri-miss",
			map[string]int64{"tiercache.http.requests/uncacheable": 1}},
		{"purge", func() string {
			if err := f.mw.Purge(ctx, u); err != nil {
				t.Error(err)
			}
			return ""
		}, "", map[string]int64{"tiercache.http.invalidations/purge": 1}},
		{"miss after purge", func() string { return cacheStatus(f.do("GET", u)) }, "tiercache; fwd=uri-miss; stored",
			map[string]int64{"tiercache.http.requests/miss": 1, "tiercache.http.stored": 1}},
		{"purge tag", func() string {
			if err := f.mw.PurgeTag(ctx, "a", "b"); err != nil {
				t.Error(err)
			}
			return ""
		}, "", map[string]int64{"tiercache.http.invalidations/purge_tag": 2}},
		{"miss after purge tag", func() string { return cacheStatus(f.do("GET", u)) }, "tiercache; fwd=stale; stored",
			map[string]int64{"tiercache.http.requests/miss": 1, "tiercache.http.stored": 1}},
		{"unsafe method", func() string { return cacheStatus(f.do("POST", u)) }, "tiercache; fwd=method",
			map[string]int64{"tiercache.http.requests/bypass": 1, "tiercache.http.invalidations/unsafe_method": 1}},
		{"OPTIONS", func() string { return cacheStatus(f.do("OPTIONS", u)) }, "tiercache; fwd=method",
			map[string]int64{"tiercache.http.requests/bypass": 1}},
		{"only-if-cached", func() string {
			return cacheStatus(f.do("GET", "http://example.com/none", "Cache-Control", "only-if-cached"))
		}, "tiercache; detail=only-if-cached", map[string]int64{"tiercache.http.requests/miss": 1}},
		{"swr miss", func() string { return cacheStatus(f.do("GET", "http://example.com/swr")) }, "tiercache; fwd=uri-miss; stored",
			map[string]int64{"tiercache.http.requests/miss": 1, "tiercache.http.stored": 1}},
		{"stale", func() string {
			f.clock.Advance(2 * time.Second)
			before := f.calls()
			st := cacheStatus(f.do("GET", "http://example.com/swr"))
			waitFor(t, "the background refresh", func() bool { return f.calls() == before+1 })
			return st
		}, "tiercache; hit; detail=stale-while-revalidate",
			// The background refresh stores the new response but is no request.
			map[string]int64{"tiercache.http.requests/stale": 1, "tiercache.http.stored": 1}},
	}
	for _, s := range steps {
		if got := s.do(); got != s.status {
			t.Errorf("%s: Cache-Status %q, want %q", s.name, got, s.status)
		}
		for k, d := range s.delta {
			want[k] += d
		}
		got := rig.counts(t, "http")
		if s.name == "stale" {
			// The refresh stores its response after the origin returns.
			waitFor(t, "the refreshed response stored", func() bool {
				got = rig.counts(t, "http")
				return got["tiercache.http.stored"] == want["tiercache.http.stored"]
			})
		}
		if !maps.Equal(got, want) {
			t.Fatalf("after %s:\n got %v\nwant %v", s.name, got, want)
		}
	}

	st := f.mw.Stats()
	for k, v := range map[string]uint64{
		"tiercache.http.requests/hit": st.Hits, "tiercache.http.requests/revalidated": st.Revalidated,
		"tiercache.http.requests/stale": st.Stale, "tiercache.http.requests/collapsed": st.Collapsed,
		"tiercache.http.requests/miss": st.Misses, "tiercache.http.requests/uncacheable": st.Uncacheable,
		"tiercache.http.requests/bypass": st.Bypassed, "tiercache.http.stored": st.Stored,
		"tiercache.http.invalidations/unsafe_method": st.InvalidatedURLs,
		"tiercache.http.invalidations/purge":         st.Purges, "tiercache.http.invalidations/purge_tag": st.PurgedTags,
	} {
		if int64(v) != want[k] {
			t.Errorf("Stats: %s = %d, want %d as in the metrics", k, v, want[k])
		}
	}

	f.mw.Close()
	if got := rig.counts(t, "http"); len(got) != 0 {
		t.Errorf("after Close: %v, want no data points", got)
	}
}

// Concurrent misses of one URL: one is a miss, the others collapsed onto
// its load (or hits, if they came late); the counts match the Cache-Status
// fields sent.
func TestMetricsCollapsed(t *testing.T) {
	rig := newMeterRig(t)
	gate := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		<-gate
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "once")
	}, middleware.WithMeterProvider(rig.mp))
	const n = 20
	var wg sync.WaitGroup
	statuses := make(chan string, n)
	for range n {
		wg.Go(func() { statuses <- cacheStatus(f.do("GET", "http://example.com/hot")) })
	}
	waitFor(t, "the origin call", func() bool { return f.calls() == 1 })
	close(gate)
	wg.Wait()
	close(statuses)
	outcomes := map[string]string{
		"tiercache; fwd=uri-miss; stored":            "miss",
		"tiercache; fwd=uri-miss; stored; collapsed": "collapsed",
		"tiercache; hit":                             "hit",
	}
	want := map[string]int64{}
	for s := range statuses {
		o, ok := outcomes[s]
		if !ok {
			t.Fatalf("unexpected Cache-Status %q", s)
		}
		want["tiercache.http.requests/"+o]++
	}
	if want["tiercache.http.requests/miss"] != 1 {
		t.Fatalf("outcomes %v: want one miss", want)
	}
	got := rig.counts(t, "http")
	for _, o := range []string{"miss", "collapsed", "hit"} {
		k := "tiercache.http.requests/" + o
		if got[k] != want[k] {
			t.Errorf("%s = %d, want %d", k, got[k], want[k])
		}
	}
	if got["tiercache.http.stored"] != 1 {
		t.Errorf("stored = %d, want 1", got["tiercache.http.stored"])
	}
}

// A hit with an SDK meter provider allocates no more than without one.
func TestHitAllocationsWithSDK(t *testing.T) {
	rig := newMeterRig(t)
	mw, err := middleware.New(memCache(t), middleware.WithMeterProvider(rig.mp))
	if err != nil {
		t.Fatal(err)
	}
	defer mw.Close()
	h := mw.Handler(http.HandlerFunc(plainHandler))
	r := httptest.NewRequest("GET", "http://example.com/item?id=42", nil)
	h.ServeHTTP(httptest.NewRecorder(), r)
	w := &discardWriter{h: make(http.Header)}
	got := testing.AllocsPerRun(1000, func() {
		clear(w.h)
		h.ServeHTTP(w, r)
	})
	if got > 1 {
		t.Errorf("a hit allocates %v times, want at most 1", got)
	}
	if n := rig.counts(t, "http")["tiercache.http.requests/hit"]; n < 1000 {
		t.Errorf("hits = %d, want >= 1000", n)
	}
}
