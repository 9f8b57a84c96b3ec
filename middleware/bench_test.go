package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/middleware"
)

var kib = []byte(strings.Repeat("0123456789abcdef", 64)) // 1 KiB

func plainHandler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "max-age=3600")
	w.Write(kib)
}

// benchHandlers returns the plain handler and the same handler behind the
// middleware, with the response already cached.
func benchHandlers(b testing.TB) (plain, cached http.Handler) {
	mw, err := middleware.New(memCache(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mw.Close() })
	cached = mw.Handler(http.HandlerFunc(plainHandler))
	w := httptest.NewRecorder()
	cached.ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/item?id=42", nil))
	w = httptest.NewRecorder()
	cached.ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/item?id=42", nil))
	if got := w.Header().Get("Cache-Status"); got != "tiercache; hit" {
		b.Fatalf("warm-up: Cache-Status %q, want a hit", got)
	}
	return http.HandlerFunc(plainHandler), cached
}

// BenchmarkCachedResponse compares, over loopback HTTP with keep-alive
// clients, a cached 1 KiB response through the middleware with a plain
// handler writing the same bytes: the req/s ratio is the middleware's cost
// as a service sees it.
func BenchmarkCachedResponse(b *testing.B) {
	plain, cached := benchHandlers(b)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"plain", plain}, {"middleware", cached}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := httptest.NewServer(bc.h)
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 4 * runtime.GOMAXPROCS(0)}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := srv.URL + "/item?id=42"
			b.ReportAllocs()
			b.SetBytes(int64(len(kib)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 2048)
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					n, _ := io.ReadFull(resp.Body, buf[:len(kib)])
					resp.Body.Close()
					if n != len(kib) {
						b.Errorf("read %d bytes", n)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// discardWriter is a reusable ResponseWriter for in-process benchmarks.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkCachedResponseInProcess is the same comparison without the
// network: ServeHTTP called directly, so the middleware's own cost (key,
// L1 lookup, header copy) is all that differs.
func BenchmarkCachedResponseInProcess(b *testing.B) {
	plain, cached := benchHandlers(b)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"plain", plain}, {"middleware", cached}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(kib)))
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("GET", "http://example.com/item?id=42", nil)
				r.Header.Set("User-Agent", "bench")
				r.Header.Set("Accept", "*/*")
				r.Header.Set("Accept-Encoding", "gzip")
				w := &discardWriter{h: make(http.Header)}
				for pb.Next() {
					clear(w.h)
					w.n = 0
					bc.h.ServeHTTP(w, r)
					if w.n != len(kib) {
						b.Errorf("wrote %d bytes", w.n)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// A hit allocates only its key.
func TestHitAllocations(t *testing.T) {
	_, cached := benchHandlers(t)
	r := httptest.NewRequest("GET", "http://example.com/item?id=42", nil)
	w := &discardWriter{h: make(http.Header)}
	got := testing.AllocsPerRun(1000, func() {
		clear(w.h)
		cached.ServeHTTP(w, r)
	})
	if got > 1 {
		t.Errorf("a hit allocates %v times, want at most 1", got)
	}
}
