package middleware

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// cacheableStatus reports whether responses with code may be stored: the
// status codes RFC 9110 (Section 15.1) defines as heuristically cacheable,
// less 206 (the middleware does not handle ranges).
func cacheableStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
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
// sorted and unique. reqTime and respTime bracket the handler call.
func (m *Middleware) buildRecord(rq *request, c *capture, reqTime, respTime time.Time) (rec *Response, vary []string) {
	if c.passedThrough() || c.flushed || c.overflow || rq.head || rq.cc.noStore {
		return nil, nil
	}
	status := c.status
	if status == 0 {
		status = http.StatusOK
	}
	if !cacheableStatus(status) {
		return nil, nil
	}
	h := c.snapshot
	if h == nil {
		h = c.header
	}
	if _, ok := h["Set-Cookie"]; ok {
		return nil, nil
	}
	if _, ok := h["Trailer"]; ok {
		return nil, nil
	}
	for k := range c.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return nil, nil
		}
	}
	cc := parseCacheControl(h["Cache-Control"])
	if cc.noStore || cc.private || cc.noCache {
		return nil, nil
	}
	shared := cc.public || cc.sMaxAge != unset || cc.mustRevalidate
	if rq.has(rqAuth) && !shared {
		return nil, nil // RFC 9111, Section 3.5
	}
	for _, v := range headerTokens(h["Vary"]) {
		if v == "*" {
			return nil, nil
		}
		if !validFieldName(v) {
			return nil, nil
		}
		vary = append(vary, textproto.CanonicalMIMEHeaderKey(v))
	}
	slices.Sort(vary)
	vary = slices.Compact(vary)
	if len(vary) > maxVaryNames {
		return nil, nil
	}

	// Freshness lifetime (RFC 9111, Section 4.2.1).
	dateValue := respTime
	if vs := h["Date"]; len(vs) > 0 {
		if t, err := http.ParseTime(vs[0]); err == nil {
			dateValue = t
		}
	}
	var fresh time.Duration
	switch {
	case cc.sMaxAge != unset:
		fresh = seconds(cc.sMaxAge)
	case cc.maxAge != unset:
		fresh = seconds(cc.maxAge)
	case len(h["Expires"]) > 0:
		if t, err := http.ParseTime(h["Expires"][0]); err == nil && t.After(dateValue) {
			fresh = t.Sub(dateValue)
		}
	default:
		if m.cfg.defaultTTL == 0 {
			return nil, nil
		}
		fresh = m.cfg.defaultTTL
	}
	fresh = min(fresh, maxStoredDuration)

	// Corrected initial age (RFC 9111, Section 4.2.3).
	var ageValue time.Duration
	if vs := h["Age"]; len(vs) > 0 {
		if a := parseDelta(strings.TrimSpace(vs[0])); a >= 0 {
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
	if cc.mustRevalidate || cc.proxyRevalidate {
		flags |= flagNoStale
		swr, sie = 0, 0
	}
	if fresh+max(swr, sie) <= initialAge {
		return nil, nil // never usable
	}

	var tags []tagRef
	if names := trimTags(h[m.cfg.tagHeader]); len(names) > 0 {
		slices.Sort(names)
		names = slices.Compact(names)
		if len(names) > maxTags {
			return nil, nil // a purge must reach it: do not store it half-tagged
		}
		for _, t := range names {
			if !validTag(t) {
				return nil, nil
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
	if _, ok := header["Content-Type"]; !ok && len(c.body) > 0 && bodyAllowed(status) {
		// What net/http would have sent: the sniffed type.
		header["Content-Type"] = []string{http.DetectContentType(c.body)}
	}
	body := c.body
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
		return nil, nil
	}
	return rec, vary
}
