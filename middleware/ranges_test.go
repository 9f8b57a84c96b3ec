package middleware_test

import (
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Range requests are answered from a stored complete response (RFC 9110,
// Section 14).
func TestRanges(t *testing.T) {
	lm := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC).Format(http.TimeFormat)
	f := newFixture(t, text("0123456789", "Cache-Control", "max-age=60", "Content-Type", "text/plain",
		"Etag", `"strong"`, "Last-Modified", lm))
	f.do("GET", "http://example.com/r")
	tests := []struct {
		name   string
		hdr    []string
		code   int
		body   string
		crange string
	}{
		{"single", []string{"Range", "bytes=2-5"}, 206, "2345", "bytes 2-5/10"},
		{"open end", []string{"Range", "bytes=7-"}, 206, "789", "bytes 7-9/10"},
		{"suffix", []string{"Range", "bytes=-3"}, 206, "789", "bytes 7-9/10"},
		{"past the end", []string{"Range", "bytes=8-100"}, 206, "89", "bytes 8-9/10"},
		{"unit case", []string{"Range", "Bytes=0-0"}, 206, "0", "bytes 0-0/10"},
		{"unsatisfiable", []string{"Range", "bytes=20-30"}, 416, "", "bytes */10"},
		{"invalid", []string{"Range", "bytes=5-2"}, 200, "0123456789", ""},
		{"other unit", []string{"Range", "items=0-1"}, 200, "0123456789", ""},
		{"If-Range etag", []string{"Range", "bytes=0-1", "If-Range", `"strong"`}, 206, "01", "bytes 0-1/10"},
		{"If-Range other etag", []string{"Range", "bytes=0-1", "If-Range", `"other"`}, 200, "0123456789", ""},
		{"If-Range weak etag", []string{"Range", "bytes=0-1", "If-Range", `W/"strong"`}, 200, "0123456789", ""},
		{"If-Range date", []string{"Range", "bytes=0-1", "If-Range", lm}, 206, "01", "bytes 0-1/10"},
		{"If-Range other date", []string{"Range", "bytes=0-1", "If-Range", "Tue, 01 Jan 2030 00:00:00 GMT"}, 200, "0123456789", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do("GET", "http://example.com/r", tt.hdr...)
			if w.Code != tt.code || body(w) != tt.body || w.Header().Get("Content-Range") != tt.crange {
				t.Errorf("%d %q Content-Range %q; want %d %q %q", w.Code, body(w), w.Header().Get("Content-Range"), tt.code, tt.body, tt.crange)
			}
			if cs := cacheStatus(w); cs != "tiercache; hit" {
				t.Errorf("Cache-Status %q, want a hit", cs)
			}
		})
	}
	t.Run("multiple", func(t *testing.T) {
		w := f.do("GET", "http://example.com/r", "Range", "bytes=0-1, 5-6")
		if w.Code != 206 {
			t.Fatalf("status %d", w.Code)
		}
		mt, params, err := mime.ParseMediaType(w.Header().Get("Content-Type"))
		if err != nil || mt != "multipart/byteranges" {
			t.Fatalf("Content-Type %q: %v", w.Header().Get("Content-Type"), err)
		}
		mr := multipart.NewReader(strings.NewReader(body(w)), params["boundary"])
		for _, want := range []struct{ cr, data string }{{"bytes 0-1/10", "01"}, {"bytes 5-6/10", "56"}} {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			if p.Header.Get("Content-Range") != want.cr || string(b) != want.data || p.Header.Get("Content-Type") != "text/plain" {
				t.Errorf("part %q %q %q, want %q %q", p.Header.Get("Content-Range"), p.Header.Get("Content-Type"), b, want.cr, want.data)
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("more parts: %v", err)
		}
	})
	t.Run("HEAD ignores Range", func(t *testing.T) {
		if w := f.do("HEAD", "http://example.com/r", "Range", "bytes=0-1"); w.Code != 200 {
			t.Errorf("HEAD with Range: %d, want 200", w.Code)
		}
	})
	if got := f.calls(); got != 1 {
		t.Errorf("origin calls = %d, want 1", got)
	}
}

// A Range miss fetches and stores the full response (the origin never
// sees the Range), and answers with the range.
func TestRangeMiss(t *testing.T) {
	rig := newProxyRig(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" || r.Header.Get("If-Range") != "" {
			t.Errorf("origin got Range %q If-Range %q", r.Header.Get("Range"), r.Header.Get("If-Range"))
		}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "abcdefghij")
	})
	resp, b := rig.get("GET", "/rm", "Range", "bytes=3-4")
	if resp.StatusCode != 206 || b != "de" || !strings.Contains(status(resp), "stored") {
		t.Fatalf("range miss: %d %q %q", resp.StatusCode, b, status(resp))
	}
	resp, b = rig.get("GET", "/rm")
	if resp.StatusCode != 200 || b != "abcdefghij" || status(resp) != "tiercache; hit" {
		t.Fatalf("full request after: %d %q %q", resp.StatusCode, b, status(resp))
	}
	if rig.originCalls() != 1 {
		t.Errorf("origin calls %d, want 1", rig.originCalls())
	}
}
