package middleware

import (
	"testing"
	"time"
)

func TestParseHTTPDate(t *testing.T) {
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, s := range []string{
		"Sun, 06 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994",
		// names in any case
		"SUN, 06 NOV 1994 08:49:37 gmt",
		"sunday, 06-nov-94 08:49:37 Gmt",
		"sun NOV  6 08:49:37 1994",
	} {
		if got, ok := parseHTTPDate(s); !ok || !got.Equal(want) {
			t.Errorf("parseHTTPDate(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{
		"Thu, 18  Aug  2050 02:01:18 GMT", // double spaces
		"Thu, 18 Aug 2050 2:01:18 GMT",    // one-digit hour
		"Thu, 18 Aug 2050 02:01:18 UTC",
		"Thu, 18 Aug 2050 02:01:18 +0000",
		"Thu, 31 Feb 2050 02:01:18 GMT",
		"Thu, 18 Aug 2050 24:01:18 GMT",
		"Xyz, 18 Aug 2050 02:01:18 GMT",
		"Thu, 18 Aug 50 02:01:18 GMT",
		"Thursday, 18-Aug-2050 02:01:18 GMT",
		"Thu Aug 18 02:01:18 2050 ",
		"Sun Nov 06 08:49:37 1994", // asctime pads with a space
		"2050-08-18T02:01:18Z",
		"0",
		"",
	} {
		if got, ok := parseHTTPDate(s); ok {
			t.Errorf("parseHTTPDate(%q) = %v, want invalid", s, got)
		}
	}
	// rfc850's two-digit year: not more than 50 years ahead.
	y := time.Now().Year() + 60
	s := time.Date(y, 1, 2, 3, 4, 5, 0, time.UTC).Format("Monday, 02-Jan-06 15:04:05 GMT")
	if got, ok := parseHTTPDate(s); !ok || got.Year() != y-100 {
		t.Errorf("parseHTTPDate(%q) = %v, %v; want year %d", s, got, ok, y-100)
	}
}
