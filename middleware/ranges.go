package middleware

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Range requests (RFC 9110, Section 14) are answered from stored complete
// 200 responses: one range as 206 with Content-Range, several as
// multipart/byteranges, none satisfiable as 416. A miss loads and stores
// the whole response (the Range field is not sent to the origin on a
// load). A Range field the cache does not understand, or an If-Range that
// does not match, is ignored: the whole response is sent.

// maxRanges is the most ranges answered in one multipart response; a
// request with more gets the whole response (RFC 9110, Section 14.2 lets a
// server ignore ranges it finds abusive).
const maxRanges = 16

type byteRange struct{ start, end int } // inclusive

// parseRange parses a Range field value for a representation of size
// bytes. ok is false when the field is not a valid bytes range set (it is
// then ignored); an empty result means nothing in it is satisfiable.
func parseRange(s string, size int) (ranges []byteRange, ok bool) {
	unit, set, found := strings.Cut(s, "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return nil, false
	}
	n := 0
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue // empty list elements are allowed
		}
		if n++; n > maxRanges {
			return nil, false
		}
		first, last, found := strings.Cut(spec, "-")
		if !found {
			return nil, false
		}
		if first == "" { // suffix: the last n bytes
			k, err := strconv.ParseUint(last, 10, 63)
			if err != nil || !allDigits(last) {
				return nil, false
			}
			if k > 0 && size > 0 {
				ranges = append(ranges, byteRange{max(size-int(min(k, uint64(size))), 0), size - 1})
			}
			continue
		}
		a, err := strconv.ParseUint(first, 10, 63)
		if err != nil || !allDigits(first) {
			return nil, false
		}
		b := uint64(size) - 1
		if last != "" {
			if b, err = strconv.ParseUint(last, 10, 63); err != nil || !allDigits(last) || b < a {
				return nil, false
			}
			b = min(b, uint64(size)-1)
		}
		if a >= uint64(size) {
			continue // unsatisfiable
		}
		ranges = append(ranges, byteRange{int(a), int(b)})
	}
	if n == 0 {
		return nil, false
	}
	return ranges, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ifRangeMatches evaluates If-Range against a stored response (RFC 9110,
// Section 13.1.5): an entity-tag must match the stored strong ETag; a
// date must equal Last-Modified.
func ifRangeMatches(lines []string, rec *Response) bool {
	if len(lines) != 1 {
		return false
	}
	v := strings.TrimSpace(lines[0])
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		tag, weak, ok := parseETag(v)
		if !ok || weak {
			return false
		}
		stored := rec.header["Etag"]
		if len(stored) != 1 {
			return false
		}
		st, sweak, sok := parseETag(stored[0])
		return sok && !sweak && st == tag
	}
	t, ok := parseHTTPDate(v)
	if !ok {
		return false
	}
	lm, ok := headerDate(rec.header["Last-Modified"])
	return ok && lm.Equal(t)
}

// writeRange answers a Range request from rec (a stored 200) and reports
// whether it did; false means the whole response is to be sent.
func (m *Middleware) writeRange(w http.ResponseWriter, r *http.Request, rec *Response, age []string, status cacheStatus) bool {
	lines := r.Header["Range"]
	if len(lines) != 1 {
		return false
	}
	if ir, ok := r.Header["If-Range"]; ok && !ifRangeMatches(ir, rec) {
		return false
	}
	size := len(rec.body)
	ranges, ok := parseRange(lines[0], size)
	if !ok {
		return false
	}
	m.met.request(status.out)
	h := w.Header()
	if len(ranges) == 0 {
		h["Content-Range"] = []string{fmt.Sprintf("bytes */%d", size)}
		h["Cache-Status"] = status.field
		h["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return true
	}
	for _, f := range rec.fields {
		h[f.name] = f.values
	}
	h["Age"] = age
	h["Cache-Status"] = status.field
	if len(ranges) == 1 {
		br := ranges[0]
		h["Content-Range"] = []string{fmt.Sprintf("bytes %d-%d/%d", br.start, br.end, size)}
		h["Content-Length"] = []string{strconv.Itoa(br.end - br.start + 1)}
		w.WriteHeader(http.StatusPartialContent)
		w.Write(rec.body[br.start : br.end+1]) //nolint:errcheck // the client went away
		return true
	}
	boundary := fmt.Sprintf("%016x", newID())
	ct := rec.header["Content-Type"]
	var b strings.Builder
	for _, br := range ranges {
		b.WriteString("--" + boundary + "\r\n")
		if len(ct) > 0 {
			b.WriteString("Content-Type: " + ct[0] + "\r\n")
		}
		fmt.Fprintf(&b, "Content-Range: bytes %d-%d/%d\r\n\r\n", br.start, br.end, size)
		b.Write(rec.body[br.start : br.end+1])
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	h["Content-Type"] = []string{"multipart/byteranges; boundary=" + boundary}
	h["Content-Length"] = []string{strconv.Itoa(b.Len())}
	w.WriteHeader(http.StatusPartialContent)
	w.Write([]byte(b.String())) //nolint:errcheck // the client went away
	return true
}
