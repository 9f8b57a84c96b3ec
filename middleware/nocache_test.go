package middleware_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// noCacheOrigin answers with a stored-looking response carrying hdr,
// and 304 to a conditional request when notModified is set; it records the
// validators each request carried.
type noCacheOrigin struct {
	mu          sync.Mutex
	hdr         []string
	notModified bool
	status      int // of unconditional answers; 0: 200
	body        string
	seen        []string // "INM=...;IMS=..." per request
}

func (o *noCacheOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	inm, ims := r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")
	o.seen = append(o.seen, "INM="+inm+";IMS="+ims)
	for i := 0; i+1 < len(o.hdr); i += 2 {
		w.Header().Add(o.hdr[i], o.hdr[i+1])
	}
	if o.notModified && (inm != "" || ims != "") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if o.status != 0 {
		w.WriteHeader(o.status)
	}
	io.WriteString(w, o.body)
}

func (o *noCacheOrigin) requests() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

// A no-cache response with a validator is stored and revalidated with a
// conditional request before every use (RFC 9111, Section 5.2.2.4), even
// when its max-age says it is fresh.
func TestNoCacheRevalidated(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		hdr        []string
	}{
		{"ETag", `INM="abcd";IMS=`, []string{"Cache-Control", "no-cache", "Etag", `"abcd"`}},
		{"ETag, fresh max-age and Expires", `INM="abcd";IMS=`, []string{"Cache-Control", "max-age=10000, no-cache", "Expires", "Thu, 01 Jan 2099 00:00:00 GMT", "Etag", `"abcd"`}},
		{"Last-Modified", "INM=;IMS=Mon, 01 Jan 2029 00:00:00 GMT", []string{"Cache-Control", "no-cache", "Last-Modified", "Mon, 01 Jan 2029 00:00:00 GMT"}},
		{"CDN-Cache-Control", `INM="abcd";IMS=`, []string{"CDN-Cache-Control", "no-cache", "Cache-Control", "max-age=600", "Etag", `"abcd"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := &noCacheOrigin{hdr: tt.hdr, notModified: true, body: "stored body"}
			f := newFixture(t, o.serve)
			if w := f.do("GET", "http://example.com/nc"); !strings.Contains(cacheStatus(w), "stored") {
				t.Fatalf("first response: Cache-Status %q, want stored", cacheStatus(w))
			}
			for i := range 2 {
				w := f.do("GET", "http://example.com/nc")
				if w.Code != 200 || body(w) != "stored body" {
					t.Fatalf("request %d: %d %q, want the stored 200", i+2, w.Code, body(w))
				}
				if got := cacheStatus(w); !strings.Contains(got, "fwd-status=304") {
					t.Errorf("request %d: Cache-Status %q, want fwd=stale; fwd-status=304", i+2, got)
				}
			}
			seen := o.requests()
			if len(seen) != 3 || seen[1] != tt.want || seen[2] != tt.want {
				t.Errorf("origin saw %q, want an unconditional request then two with %q", seen, tt.want)
			}
		})
	}
}

// A no-cache response the origin replaced is served anew; one the origin
// cannot confirm is never served (not even with stale-if-error); a
// client's own validators are answered from the confirmed response; and
// only-if-cached cannot use it.
func TestNoCacheNeverServedUnvalidated(t *testing.T) {
	o := &noCacheOrigin{hdr: []string{"Cache-Control", "no-cache, stale-if-error=600", "Etag", `"v1"`}, body: "one"}
	f := newFixture(t, o.serve)
	f.do("GET", "http://example.com/nc")

	if w := f.do("GET", "http://example.com/nc", "Cache-Control", "only-if-cached"); w.Code != http.StatusGatewayTimeout {
		t.Errorf("only-if-cached: %d, want 504", w.Code)
	}
	o.mu.Lock()
	o.hdr[3], o.body = `"v2"`, "two"
	o.mu.Unlock()
	if w := f.do("GET", "http://example.com/nc"); body(w) != "two" {
		t.Errorf("after the origin changed: %q, want two", body(w))
	}
	o.mu.Lock()
	o.notModified = true
	o.mu.Unlock()
	if w := f.do("GET", "http://example.com/nc", "If-None-Match", `"v2"`); w.Code != http.StatusNotModified {
		t.Errorf("client If-None-Match after a 304 from the origin: %d, want 304", w.Code)
	}
	o.mu.Lock()
	o.notModified, o.status, o.body = false, 503, "down"
	o.mu.Unlock()
	if w := f.do("GET", "http://example.com/nc"); w.Code != 503 || body(w) != "down" {
		t.Errorf("origin failing: %d %q, want its 503 (no-cache is never served unvalidated)", w.Code, body(w))
	}
	if n := len(o.requests()); n != 4 {
		t.Errorf("origin requests %d, want 4 (only-if-cached must not reach it)", n)
	}
}
