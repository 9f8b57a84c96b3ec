package middleware

import (
	"strings"
	"time"
)

// HTTP dates, parsed strictly (RFC 9110, Section 5.6.7): exactly one of
//
//	IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
//	rfc850-date  Sunday, 06-Nov-94 08:49:37 GMT
//	asctime      Sun Nov  6 08:49:37 1994
//
// with the fixed widths, single spaces and two-digit clock fields the
// grammar gives. http.ParseTime is looser (it takes "18  Aug" and
// "2:01:18"), which would let a malformed Expires count as a date. The
// names alone (day, month, "GMT") are matched without regard to case:
// "THU, 18 AUG 2050 02:01:18 gmt" is unambiguous and is the same date,
// as most caches read it.

var (
	shortDays = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDays  = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	months    = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// parseHTTPDate parses an HTTP-date; ok is false for anything else.
func parseHTTPDate(s string) (t time.Time, ok bool) {
	switch {
	case len(s) == 29 && s[3] == ',':
		return parseIMFFixdate(s)
	case len(s) == 24 && s[3] == ' ':
		return parseAsctime(s)
	}
	return parseRFC850(s)
}

// parseIMFFixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
func parseIMFFixdate(s string) (time.Time, bool) {
	if !oneOf(s[:3], shortDays[:]) || s[3:5] != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || !strings.EqualFold(s[25:], " GMT") {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	mon, ok2 := month(s[8:11])
	year, ok3 := digits(s[12:16])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return clockDate(year, mon, day, s[17:25])
}

// parseRFC850: "Sunday, 06-Nov-94 08:49:37 GMT". A two-digit year more
// than 50 years ahead is the most recent past year with those digits.
func parseRFC850(s string) (time.Time, bool) {
	name, rest, ok := strings.Cut(s, ", ")
	if !ok || !oneOf(name, longDays[:]) || len(rest) != 22 || rest[2] != '-' || rest[6] != '-' || rest[9] != ' ' || !strings.EqualFold(rest[18:], " GMT") {
		return time.Time{}, false
	}
	day, ok1 := digits(rest[0:2])
	mon, ok2 := month(rest[3:6])
	yy, ok3 := digits(rest[7:9])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	year := time.Now().Year()/100*100 + yy
	if year > time.Now().Year()+50 {
		year -= 100
	}
	return clockDate(year, mon, day, rest[10:18])
}

// parseAsctime: "Sun Nov  6 08:49:37 1994" (the day is space-padded).
func parseAsctime(s string) (time.Time, bool) {
	if !oneOf(s[:3], shortDays[:]) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	mon, ok1 := month(s[4:7])
	dd := s[8:10]
	if dd[0] == ' ' {
		dd = "0" + dd[1:]
	}
	day, ok2 := digits(dd)
	year, ok3 := digits(s[20:24])
	if !ok1 || !ok2 || !ok3 || s[8] == '0' {
		return time.Time{}, false
	}
	return clockDate(year, mon, day, s[11:19])
}

// clockDate checks "hh:mm:ss" and the day of the month, and builds the time.
func clockDate(year int, mon time.Month, day int, clock string) (time.Time, bool) {
	if clock[2] != ':' || clock[5] != ':' {
		return time.Time{}, false
	}
	h, ok1 := digits(clock[0:2])
	m, ok2 := digits(clock[3:5])
	sec, ok3 := digits(clock[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 60 || day < 1 {
		return time.Time{}, false
	}
	t := time.Date(year, mon, day, h, m, min(sec, 59), 0, time.UTC)
	if t.Day() != day { // 31 Feb
		return time.Time{}, false
	}
	return t, true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, len(s) > 0
}

func month(s string) (time.Month, bool) {
	for i, m := range months {
		if strings.EqualFold(s, m) {
			return time.Month(i + 1), true
		}
	}
	return 0, false
}

func oneOf(s string, list []string) bool {
	for _, v := range list {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}

// headerDate parses the single value of a date field; ok is false when the
// field is absent, repeated or not an HTTP-date.
func headerDate(vs []string) (time.Time, bool) {
	if len(vs) != 1 {
		return time.Time{}, false
	}
	return parseHTTPDate(vs[0])
}
