package middleware

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// heuristicStatus reports whether responses with code may be stored
// without explicit freshness (with WithDefaultTTL): the status codes RFC
// 9110 (Section 15.1) defines as heuristically cacheable, less 206 (a
// partial response is never stored; ranges are answered from complete
// ones).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus reports whether the cache understands the final status
// code, for must-understand (RFC 9111, Section 5.2.2.3): every final status
// RFC 9110 defines, less 206 (partial) and 304 (which updates a stored
// response instead).
func understoodStatus(code int) bool {
	switch {
	case code >= 200 && code <= 208, code == 226:
		return code != 206
	case code >= 300 && code <= 308:
		return code != 304 && code != 306
	case code >= 400 && code <= 418, code == 421, code == 422, code == 426, code == 428, code == 429, code == 431, code == 451:
		return true
	case code >= 500 && code <= 505, code == 511:
		return true
	}
	return false
}

// storableStatus reports whether a response with code and directives cc
// may be stored as far as its status goes (RFC 9111, Section 3): any final
// status (200-599) but 206 (partial) and 304; with must-understand, only
// those understoodStatus knows. noStore is cc's no-store, which
// must-understand overrides for an understood status (Section 5.2.2.3: the
// cache that understands the status code ignores no-store).
func storableStatus(code int, cc directives) (ok, noStore bool) {
	if code < 200 || code > 599 || code == http.StatusPartialContent || code == http.StatusNotModified {
		return false, cc.noStore
	}
	if cc.mustUnderstand {
		if !understoodStatus(code) {
			return false, cc.noStore
		}
		return true, false
	}
	return true, cc.noStore
}

func seconds(n int64) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// buildRecord turns what the origin handler wrote into a stored response,
// or returns nil when it must not be stored (RFC 9111, Section 3, with the
// shared-cache rules). vary is the response's Vary field names, canonical,
// sorted and unique. reqTime and respTime bracket the handler call. pass
// is true when the response itself may not be stored (for hit-for-pass),
// false when it is this request that kept it out (Authorization, request
// no-store...).
func (m *Middleware) buildRecord(rq *request, c *capture, reqTime, respTime time.Time) (rec *Response, vary []string, pass bool) {
	if rq.cc.noStore {
		return nil, nil, false
	}
	if c.passedThrough() || c.overflow {
		return nil, nil, true
	}
	status := c.status
	if status == 0 {
		status = http.StatusOK
	}
	h := c.snapshot
	if h == nil {
		h = c.header
	}
	for k := range c.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return nil, nil, true
		}
	}
	return m.newRecord(rq, status, h, c.body, reqTime, respTime)
}

// newRecord builds the stored response for status, header h and body, or
// returns nil when it must not be stored (see buildRecord).
func (m *Middleware) newRecord(rq *request, status int, h http.Header, body []byte, reqTime, respTime time.Time) (rec *Response, vary []string, pass bool) {
	if _, ok := h["Set-Cookie"]; ok {
		return nil, nil, true
	}
	if _, ok := h["Trailer"]; ok {
		return nil, nil, true
	}
	cc, targeted := m.responseDirectives(h)
	statusOK, noStore := storableStatus(status, cc)
	if !statusOK || noStore || cc.private {
		return nil, nil, true
	}
	if cc.noCache && !hasValidator(h) {
		// Stored, it could only be revalidated with a full response: no
		// point (RFC 9111, Section 5.2.2.4).
		return nil, nil, true
	}
	shared := cc.public || cc.sMaxAge != unset || cc.mustRevalidate
	if rq.has(rqAuth) && !shared {
		return nil, nil, false // RFC 9111, Section 3.5
	}
	for _, v := range headerTokens(h["Vary"]) {
		if v == "*" {
			return nil, nil, true
		}
		if !validFieldName(v) {
			return nil, nil, true
		}
		vary = append(vary, textproto.CanonicalMIMEHeaderKey(v))
	}
	slices.Sort(vary)
	vary = slices.Compact(vary)
	if len(vary) > maxVaryNames {
		return nil, nil, true
	}

	// Freshness lifetime (RFC 9111, Section 4.2.1).
	dateValue := respTime
	if vs := h["Date"]; len(vs) > 0 {
		if t, ok := parseHTTPDate(vs[0]); ok {
			dateValue = t
		}
	}
	var fresh time.Duration
	switch {
	case cc.noCache:
		// Stored, but validated with the origin before every use
		// (RFC 9111, Section 5.2.2.4), whatever its lifetime says.
	case cc.sMaxAge != unset:
		fresh = seconds(cc.sMaxAge)
	case cc.maxAge != unset:
		fresh = seconds(cc.maxAge)
	case len(h["Expires"]) > 0 && !targeted:
		// An invalid Expires (also one given twice) means already
		// expired (RFC 9111, Section 5.3).
		if t, ok := headerDate(h["Expires"]); ok && t.After(dateValue) {
			fresh = t.Sub(dateValue)
		}
	default:
		var ok bool
		if fresh, ok = m.heuristicLifetime(status, cc, h, dateValue); !ok {
			return nil, nil, true
		}
		if rq.has(rqCookie|rqAuth) && !cc.public {
			// A heuristic or default lifetime is the cache's guess: a
			// page for a logged-in user must not become everybody's.
			return nil, nil, false
		}
	}
	fresh = min(fresh, maxStoredDuration)

	// Corrected initial age (RFC 9111, Section 4.2.3). Age is a single
	// delta-seconds; a list (two lines, or "7200, 0") counts by its first
	// member.
	var ageValue time.Duration
	if vs := h["Age"]; len(vs) > 0 {
		first, _, _ := strings.Cut(vs[0], ",")
		if a := parseDelta(strings.TrimSpace(first)); a >= 0 {
			ageValue = seconds(a)
		}
	}
	apparent := max(respTime.Sub(dateValue), 0)
	delay := max(respTime.Sub(reqTime), 0)
	initialAge := min(max(apparent, ageValue+delay), maxStoredDuration)

	var flags uint8
	if shared {
		flags |= flagShared
	}
	swr, sie := seconds(cc.staleWhileRevalidate), seconds(cc.staleIfError)
	if cc.mustRevalidate || cc.proxyRevalidate || cc.noCache {
		flags |= flagNoStale
		swr, sie = 0, 0
	}
	if cc.noCache {
		flags |= flagNoCache
	} else if fresh+max(swr, sie) <= initialAge {
		return nil, nil, true // never usable
	}

	var tags []tagRef
	if names := trimTags(h[m.cfg.tagHeader]); len(names) > 0 {
		slices.Sort(names)
		names = slices.Compact(names)
		if len(names) > maxTags {
			return nil, nil, true // a purge must reach it: do not store it half-tagged
		}
		for _, t := range names {
			if !validTag(t) {
				return nil, nil, true
			}
			tags = append(tags, tagRef{name: t})
		}
	}

	header := h.Clone()
	removeHopByHop(header)
	for _, f := range cc.privateFields {
		delete(header, f)
	}
	for _, f := range cc.noCacheFields {
		delete(header, f)
	}
	if _, ok := header["Date"]; !ok {
		header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	if _, ok := header["Content-Type"]; !ok && len(body) > 0 && bodyAllowed(status) {
		// What net/http would have sent: the sniffed type.
		header["Content-Type"] = []string{http.DetectContentType(body)}
	}
	if !bodyAllowed(status) {
		body = nil
	}
	rec = &Response{
		kind:       kindResponse,
		flags:      flags,
		status:     status,
		id:         newID(),
		storedAt:   respTime,
		initialAge: initialAge,
		fresh:      fresh,
		swr:        min(swr, maxStoredDuration),
		sie:        min(sie, maxStoredDuration),
		header:     header,
		body:       body,
		tags:       tags,
	}
	if rec.finish() != nil {
		return nil, nil, true
	}
	return rec, vary, false
}

// mayStore is a quick look at a response being written, at a flush: false
// when it is an event stream or clearly may not be stored, so the flush
// goes through at once instead of being held back for storing.
func (m *Middleware) mayStore(status int, h http.Header) bool {
	if strings.HasPrefix(strings.TrimSpace(h.Get("Content-Type")), "text/event-stream") {
		return false
	}
	if _, ok := h["Set-Cookie"]; ok {
		return false
	}
	cc, targeted := m.responseDirectives(h)
	if statusOK, noStore := storableStatus(status, cc); !statusOK || noStore || cc.private {
		return false
	}
	if cc.noCache {
		return hasValidator(h)
	}
	explicit := cc.sMaxAge != unset || cc.maxAge != unset || (!targeted && len(h["Expires"]) > 0)
	if explicit {
		return true
	}
	_, ok := m.heuristicLifetime(status, cc, h, time.Time{})
	return ok
}

// hasValidator reports whether a response header carries a validator the
// cache can revalidate with: a valid ETag or Last-Modified.
func hasValidator(h http.Header) bool {
	if vs := h["Etag"]; len(vs) == 1 {
		if _, _, ok := parseETag(vs[0]); ok {
			return true
		}
	}
	_, ok := headerDate(h["Last-Modified"])
	return ok
}

// heuristicLifetime returns the lifetime the cache gives a response
// without explicit freshness (RFC 9111, Section 4.2.2), and false when it
// gives none: with WithHeuristicFreshness, a fraction of the time from
// Last-Modified to the response's date (dateValue; zero: only whether a
// lifetime may apply), capped, for a heuristically cacheable status or a
// public response; else WithDefaultTTL's, for a heuristically cacheable
// status.
func (m *Middleware) heuristicLifetime(status int, cc directives, h http.Header, dateValue time.Time) (time.Duration, bool) {
	if m.cfg.heuristicFrac > 0 && (heuristicStatus(status) || cc.public) {
		if lm, ok := headerDate(h["Last-Modified"]); ok {
			if dateValue.IsZero() {
				return 0, true
			}
			if since := dateValue.Sub(lm); since > 0 {
				if fresh := min(time.Duration(float64(since)*m.cfg.heuristicFrac), m.cfg.heuristicMax); fresh > 0 {
					return fresh, true
				}
			}
		}
	}
	if m.cfg.defaultTTL > 0 && heuristicStatus(status) {
		return m.cfg.defaultTTL, true
	}
	return 0, false
}
