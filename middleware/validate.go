package middleware

import (
	"net/http"
	"time"
)

// Validation with the origin (RFC 9111, Section 4.3): a stale stored
// response with an ETag or Last-Modified is refreshed with a conditional
// request (fill.go sends it); this file turns the origin's 304 into the
// updated stored response.

// notUpdated lists the fields a 304 does not replace in the stored
// response (RFC 9111, Section 3.2): Content-Length describes the stored
// body, not the 304's (empty) one; hop-by-hop fields are never stored.
var notUpdated = map[string]bool{"Content-Length": true}

// revalidated updates stale with the header of the origin's 304 in c: each
// field the 304 carries replaces the stored one (RFC 9111, Section
// 4.3.4), the body stays, and freshness is computed anew from the updated
// header as for any response. rec is the updated response to store (nil
// when it may not be stored, pass telling why as in buildRecord); answer
// is what to answer the request with when rec is nil. ok is false when the
// 304 is not about stale (its ETag differs): the caller asks again.
func (m *Middleware) revalidated(rq *request, stale *Response, c *capture, reqTime, respTime time.Time) (rec *Response, vary []string, pass bool, answer *Response, ok bool) {
	h304 := c.snapshot
	if h304 == nil {
		h304 = c.header
	}
	if vs := h304["Etag"]; len(vs) > 0 {
		tag, _, valid := parseETag(vs[0])
		if !valid || tag != stale.etag {
			return nil, nil, false, nil, false
		}
	}
	updates := h304.Clone()
	removeHopByHop(updates)
	merged := stale.header.Clone()
	for k, vs := range updates {
		if !notUpdated[k] {
			merged[k] = vs
		}
	}
	if _, ok := h304["Date"]; !ok {
		// The stored Date is the old response's: without a new one the
		// updated response would start as old as the stale one.
		delete(merged, "Date")
	}
	rec, vary, pass = m.newRecord(rq, stale.status, merged, stale.body, reqTime, respTime)
	if rec != nil {
		return rec, vary, false, nil, true
	}
	// Not storable any more (the 304 said no-store, say): this request
	// still gets the confirmed body, once.
	answer = &Response{
		kind:     kindResponse,
		flags:    stale.flags,
		status:   stale.status,
		id:       newID(),
		storedAt: respTime,
		header:   merged,
		body:     stale.body,
	}
	removeHopByHop(answer.header)
	if _, ok := answer.header["Date"]; !ok {
		answer.header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	if answer.finish() != nil {
		answer = stale
	}
	return nil, nil, pass, answer, true
}
