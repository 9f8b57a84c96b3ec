package middleware

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fwd is why a request went to the origin, as named by Cache-Status
// (RFC 9211, Section 2.2).
type fwd uint8

const (
	fwdURIMiss  fwd = iota // no response stored for the URL
	fwdVaryMiss            // responses stored for the URL, none for these Vary values
	fwdStale               // the stored response was stale (or purged)
	fwdRequest             // the request's directives or Authorization forbade the stored response
	fwdCount
)

var fwdNames = [fwdCount]string{"uri-miss", "vary-miss", "stale", "request"}

// cacheStatus is one Cache-Status field value and the outcome it stands for
// in the tiercache.http.requests metric.
type cacheStatus struct {
	field []string
	out   outcome
}

// statusValues holds every Cache-Status field value the middleware sends,
// built once so that answering does not allocate them.
type statusValues struct {
	hit          cacheStatus // fresh stored response
	hitStale     cacheStatus // stale response served while it is refreshed
	staleIfError cacheStatus // stale response served because the origin failed
	onlyIfCached cacheStatus // 504 for only-if-cached without a usable response
	hitForPass   cacheStatus // the URL is known not to be storable: straight to the origin
	// validated[stored]: a stale response the origin confirmed (304)
	validated [2]cacheStatus
	bypass    cacheStatus // request the cache does not handle (Range, Upgrade, ...)
	method    cacheStatus // method the cache does not store
	// fwd[reason][stored][collapsed]
	fwd [fwdCount][2][2]cacheStatus
}

func newStatusValues(name string) statusValues {
	v := func(out outcome, params ...string) cacheStatus {
		return cacheStatus{field: []string{name + "; " + strings.Join(params, "; ")}, out: out}
	}
	s := statusValues{
		hit:          v(outHit, "hit"),
		hitStale:     v(outStale, "hit", "detail=stale-while-revalidate"),
		staleIfError: v(outStale, "fwd=stale", "detail=stale-if-error"),
		onlyIfCached: v(outMiss, "detail=only-if-cached"),
		hitForPass:   v(outUncacheable, "fwd=uri-miss", "detail=hit-for-pass"),
		validated: [2]cacheStatus{
			v(outUncacheable, "fwd=stale", "fwd-status=304"),
			v(outMiss, "fwd=stale", "fwd-status=304", "stored"),
		},
		bypass: v(outBypass, "fwd=bypass"),
		method: v(outBypass, "fwd=method"),
	}
	for r := range fwdCount {
		for stored := range 2 {
			for collapsed := range 2 {
				p := []string{"fwd=" + fwdNames[r]}
				out := outUncacheable
				if stored == 1 {
					p = append(p, "stored")
					out = outMiss
				}
				if collapsed == 1 {
					p = append(p, "collapsed")
					out = outCollapsed
				}
				s.fwd[r][stored][collapsed] = v(out, p...)
			}
		}
	}
	return s
}

// addStatus appends the middleware's Cache-Status member to h, after any
// set by caches closer to the origin.
func addStatus(h http.Header, status []string) {
	if old := h["Cache-Status"]; len(old) > 0 {
		h["Cache-Status"] = append(slices.Clip(old), status...)
		return
	}
	h["Cache-Status"] = status
}

// ageValue returns the Age field value for age.
func (m *Middleware) ageValue(age time.Duration) []string {
	s := int64(age / time.Second)
	if s < 0 {
		s = 0
	}
	if s < ageTable {
		return m.ages[s]
	}
	return []string{strconv.FormatInt(s, 10)}
}

// writeRecord answers from a stored response: its fields, Age and
// Cache-Status, and its body unless the request is HEAD; or 304 Not
// Modified when the request's validators match; or the requested ranges
// (ranges.go). It counts the request's
// outcome (a fresh hit answered with 304 is "revalidated").
func (m *Middleware) writeRecord(w http.ResponseWriter, rq *request, rec *Response, now time.Time, status cacheStatus) {
	h := w.Header()
	age := m.ageValue(rec.age(now))
	if rq.has(rqConditional) && rec.status >= 200 && rec.status < 300 && notModified(rq.r.Header, rec) {
		out := status.out
		if out == outHit {
			out = outRevalidated
		}
		m.met.request(out)
		for _, f := range rec.notModified {
			h[f.name] = f.values
		}
		h["Age"] = age
		h["Cache-Status"] = status.field
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if rq.has(rqRange) && !rq.head && rec.status == http.StatusOK && m.writeRange(w, rq.r, rec, age, status) {
		return
	}
	m.met.request(status.out)
	for _, f := range rec.fields {
		h[f.name] = f.values
	}
	h["Age"] = age
	h["Cache-Status"] = status.field
	w.WriteHeader(rec.status)
	if !rq.head && len(rec.body) > 0 {
		w.Write(rec.body) //nolint:errcheck // the client went away
	}
}

// writeCaptured answers with a response the origin handler just wrote (not
// stored): the header as it was when the status was written, the body, and
// any trailers set later. It counts the request's outcome.
func (m *Middleware) writeCaptured(w http.ResponseWriter, rq *request, c *capture, status cacheStatus) {
	m.met.request(status.out)
	h := w.Header()
	src := c.snapshot
	if src == nil {
		src = c.header
	}
	copyHeader(h, src)
	addStatus(h, status.field)
	code := c.status
	if code == 0 {
		code = http.StatusOK
	}
	w.WriteHeader(code)
	if !rq.head && len(c.body) > 0 {
		w.Write(c.body) //nolint:errcheck // the client went away
	}
	declared := headerTokens(src["Trailer"])
	for k, vs := range c.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			h[k] = vs
			continue
		}
		for _, d := range declared {
			if http.CanonicalHeaderKey(d) == k {
				h[k] = vs
			}
		}
	}
}

// notModified evaluates If-None-Match (weak comparison), else
// If-Modified-Since, against a stored response (RFC 9110, Section 13.2.2).
func notModified(h http.Header, rec *Response) bool {
	if inm := h["If-None-Match"]; len(inm) > 0 {
		for _, line := range inm {
			if etagListMatches(line, rec.etag) {
				return true
			}
		}
		return false
	}
	ims := h["If-Modified-Since"]
	if len(ims) == 0 || rec.validator.IsZero() {
		return false
	}
	t, ok := headerDate(ims)
	if !ok {
		return false // an invalid date is ignored (RFC 9110, Section 13.1.3)
	}
	return !rec.validator.After(t)
}

// etagListMatches reports whether an If-None-Match list matches the stored
// opaque-tag with the weak comparison: "*" matches any stored
// representation, W/ prefixes are ignored.
func etagListMatches(list, etag string) bool {
	s := list
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return false
		}
		if s[0] == '*' {
			return true
		}
		s = strings.TrimPrefix(s, "W/")
		if s == "" || s[0] != '"' {
			return false // malformed: match nothing
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return false
		}
		if etag != "" && s[:end+2] == etag {
			return true
		}
		s = s[end+2:]
	}
}

func (m *Middleware) gatewayTimeout(w http.ResponseWriter) {
	m.met.request(m.status.onlyIfCached.out)
	w.Header()["Cache-Status"] = m.status.onlyIfCached.field
	w.WriteHeader(http.StatusGatewayTimeout)
}
