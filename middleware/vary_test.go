package middleware_test

import (
	"testing"
)

// Selecting header values that differ only in whitespace, case or the
// order of members of different weight select the same stored response;
// anything that may mean something else does not (RFC 9111, Section 4.1).
func TestVaryNormalised(t *testing.T) {
	type hdr = []string
	tests := []struct {
		name        string
		first, then hdr
		same        bool
	}{
		{"identical", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en, de"}, true},
		{"whitespace", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", " en ,   de"}, true},
		{"no whitespace", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en,de"}, true},
		{"case", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "eN, De"}, true},
		{"q=1 is no weight", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en;q=1.0, de"}, true},
		{"weight form", hdr{"Accept-Language", "en, de;q=0.5"}, hdr{"Accept-Language", "en, de ; Q=0.500"}, true},
		{"order by weight", hdr{"Accept-Language", "de;q=0.5, en"}, hdr{"Accept-Language", "en, de;q=0.5"}, true},
		{"two lines", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en", "Accept-Language", "de"}, true},
		{"empty member", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en, , de,"}, true},
		{"encoding case and order", hdr{"Accept-Encoding", "gzip;q=0.5, br"}, hdr{"Accept-Encoding", "BR, GZIP;q=0.50"}, true},
		{"unknown list whitespace", hdr{"Foo", "1,2"}, hdr{"Foo", " 1, 2 "}, true},
		{"unknown list lines", hdr{"Foo", "1, 2"}, hdr{"Foo", "1", "Foo", "2"}, true},

		{"equal weights keep their order", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "de, en"}, false},
		{"different weight", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en, de;q=0.9"}, false},
		{"fewer members", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en"}, false},
		{"more members", hdr{"Accept-Language", "en, de"}, hdr{"Accept-Language", "en, de, fr"}, false},
		{"absent", hdr{"Accept-Language", "en"}, nil, false},
		{"empty", hdr{"Accept-Language", "en"}, hdr{"Accept-Language", ""}, false},
		{"invalid weight: not reordered", hdr{"Accept-Language", "en;q=2, de"}, hdr{"Accept-Language", "de, en;q=2"}, false},
		{"unknown list: case kept", hdr{"Foo", "a"}, hdr{"Foo", "A"}, false},
		{"unknown list: order kept", hdr{"Foo", "1,2"}, hdr{"Foo", "2,1"}, false},
		{"unknown list: inner space kept", hdr{"Foo", "a b"}, hdr{"Foo", "ab"}, false},
		{"quoted string untouched", hdr{"Foo", `"a, b"`}, hdr{"Foo", `"a,b"`}, false},
		{"comment untouched", hdr{"Foo", "x (a, b)"}, hdr{"Foo", "x (a,b)"}, false},
		{"not a list", hdr{"User-Agent", "X/1 (KHTML, like Gecko)"}, hdr{"User-Agent", "X/1 (KHTML,like Gecko)"}, false},
		{"not a list: commas", hdr{"User-Agent", "a, b"}, hdr{"User-Agent", "a,b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, text("x", "Cache-Control", "max-age=60", "Vary", "Accept-Language, Accept-Encoding, Foo, User-Agent"))
			f.do("GET", "http://example.com/v", tt.first...)
			if got := cacheStatus(f.do("GET", "http://example.com/v", tt.first...)); got != "tiercache; hit" {
				t.Fatalf("the first request's values again: %q, want a hit", got)
			}
			got := cacheStatus(f.do("GET", "http://example.com/v", tt.then...))
			if (got == "tiercache; hit") != tt.same {
				t.Errorf("%q after %q: Cache-Status %q, want the same variant = %v", tt.then, tt.first, got, tt.same)
			}
		})
	}
}

// Weights are keyed in their shortest form: every spelling of one weight
// shares a variant, different weights never do.
func TestVaryWeightSpellings(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"gzip;q=0.5", "gzip;q=0.500", true},
		{"gzip;q=0.25", "gzip;q=0.250", true},
		{"gzip;q=0.125", "gzip; q = 0.125", true},
		{"gzip;q=0.001", "gzip;q=0.001", true},
		{"gzip;q=0", "gzip;q=0.000", true},
		{"gzip;q=1", "gzip", true},
		{"gzip;q=1.000", "gzip", true},
		{"gzip;q=0.5", "gzip;q=0.05", false},
		{"gzip;q=0.1", "gzip;q=0.01", false},
		{"gzip;q=0", "gzip", false},
		{"gzip;q=1.5", "gzip", false},
		{"gzip;q=0.5", "gzip;x=1;q=0.5", false},
	} {
		f := newFixture(t, text("x", "Cache-Control", "max-age=60", "Vary", "Accept-Encoding"))
		f.do("GET", "http://example.com/w", "Accept-Encoding", tt.a)
		got := cacheStatus(f.do("GET", "http://example.com/w", "Accept-Encoding", tt.b)) == "tiercache; hit"
		if got != tt.same {
			t.Errorf("%q after %q: same variant = %v, want %v", tt.b, tt.a, got, tt.same)
		}
	}
}
