package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/middleware"
)

// proxyRig is the middleware as its users run it: in front of an
// httputil.ReverseProxy to a real origin server, behind a real server.
type proxyRig struct {
	t      *testing.T
	mw     *middleware.Middleware
	clock  *clock
	origin *httptest.Server
	front  *httptest.Server

	mu   sync.Mutex
	seen []*http.Request // requests the origin received (headers cloned)
}

// newProxyRig starts an origin running fn and the cached proxy to it.
func newProxyRig(t *testing.T, fn http.HandlerFunc, opts ...middleware.Option) *proxyRig {
	t.Helper()
	// The clock starts at the real time: the origin sends real Dates.
	rig := &proxyRig{t: t, clock: &clock{now: time.Now().Truncate(time.Second)}}
	rig.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := r.Clone(r.Context())
		rig.mu.Lock()
		rig.seen = append(rig.seen, rc)
		rig.mu.Unlock()
		fn(w, r)
	}))
	t.Cleanup(rig.origin.Close)
	target, _ := url.Parse(rig.origin.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	mw, err := middleware.New(memCache(t), append([]middleware.Option{middleware.WithClock(rig.clock)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mw.Close() })
	rig.mw = mw
	rig.front = httptest.NewServer(mw.Handler(proxy))
	t.Cleanup(rig.front.Close)
	return rig
}

// originCalls returns how many requests reached the origin.
func (rig *proxyRig) originCalls() int {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return len(rig.seen)
}

// get sends a request through the front server; hdr holds name, value
// pairs. It returns the response with its body read.
func (rig *proxyRig) get(method, path string, hdr ...string) (*http.Response, string) {
	rig.t.Helper()
	req, err := http.NewRequest(method, rig.front.URL+path, nil)
	if err != nil {
		rig.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		rig.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rig.t.Fatal(err)
	}
	return resp, string(b)
}

func status(resp *http.Response) string {
	return strings.Join(resp.Header.Values("Cache-Status"), ", ")
}
