package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
)

// loopbackLoad runs b.N GETs of target from parallel keep-alive clients
// and reports req/s.
func loopbackLoad(b *testing.B, target string, want int) {
	tr := &http.Transport{MaxIdleConnsPerHost: 4 * runtime.GOMAXPROCS(0)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(target)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if int(n) != want {
				b.Errorf("read %d bytes, want %d", n, want)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkReverseProxy compares a cached hit through the middleware in
// front of httputil.ReverseProxy with the bare proxy (every request goes
// to the origin), over loopback.
func BenchmarkReverseProxy(b *testing.B) {
	origin := httptest.NewServer(http.HandlerFunc(plainHandler))
	defer origin.Close()
	target, _ := url.Parse(origin.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = nil
	mw, err := middleware.New(memCache(b))
	if err != nil {
		b.Fatal(err)
	}
	defer mw.Close()
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"proxy", proxy}, {"cached-proxy", mw.Handler(proxy)}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := httptest.NewServer(bc.h)
			defer srv.Close()
			loopbackLoad(b, srv.URL+"/item?id=42", len(kib))
		})
	}
}

// BenchmarkRevalidation measures what validation with the origin saves: a
// response that is stale on every request (max-age=1, the clock moves 2 s
// before each request) is refreshed through ReverseProxy from an origin that
// either answers If-None-Match with 304 (validate) or ignores it and sends
// the body again (full). origin-B/op is what the origin sent.
func BenchmarkRevalidation(b *testing.B) {
	body := strings.Repeat("x", 64<<10)
	for _, honour := range []bool{true, false} {
		name := "full"
		if honour {
			name = "validate"
		}
		b.Run(name, func(b *testing.B) {
			clk := &clock{now: time.Now().Truncate(time.Second)}
			now := clk.Now
			var sent atomic.Int64
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Set("Date", now().Format(http.TimeFormat))
				h.Set("Cache-Control", "max-age=1")
				h.Set("Etag", `"v1"`)
				if honour && r.Header.Get("If-None-Match") == `"v1"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				n, _ := io.WriteString(w, body)
				sent.Add(int64(n))
			}))
			defer origin.Close()
			target, _ := url.Parse(origin.URL)
			mw, err := middleware.New(memCache(b), middleware.WithClock(clk), middleware.WithMaxBodyBytes(1<<20))
			if err != nil {
				b.Fatal(err)
			}
			defer mw.Close()
			front := httptest.NewServer(mw.Handler(httputil.NewSingleHostReverseProxy(target)))
			defer front.Close()
			client := &http.Client{}
			get := func() {
				resp, err := client.Get(front.URL + "/doc")
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if int(n) != len(body) {
					b.Fatalf("read %d bytes", n)
				}
			}
			get() // stored
			sent.Store(0)
			b.ResetTimer()
			for range b.N {
				clk.Advance(2 * time.Second)
				get()
			}
			b.StopTimer()
			b.ReportMetric(float64(sent.Load())/float64(b.N), "origin-B/op")
			if honour && mw.Stats().Validated == 0 {
				b.Fatal("no revalidation happened")
			}
		})
	}
}
