package middleware

import (
	"context"
	"time"
)

// Stage 3: decide what to do with what the lookup found (RFC 9111,
// Section 4): serve a fresh response, serve a stale one within
// stale-while-revalidate and refresh it, replace a stale (or purged) one
// through the origin, load a miss, or forward the request uncached.

// action is what decide chose.
type action uint8

const (
	actServe        action = iota // answer from the stored response
	actServeStale                 // answer from it (stale-while-revalidate), refresh it in the background
	actRefresh                    // replace the stored response through the origin
	actLoad                       // nothing stored: load it, coalesced with every other request for it
	actReload                     // run the origin for this request alone, store the result
	actForward                    // run the origin for this request alone, store nothing
	actOnlyIfCached               // 504: only-if-cached and nothing usable
)

// decision is what decide chose, with what the act needs.
type decision struct {
	act    action
	status cacheStatus // actServe, actForward
	reason fwd         // actLoad, actReload
	now    time.Time   // actServe, actServeStale: the time freshness was judged at
	// actRefresh: whether stale-if-error may answer with the stored
	// response when the origin fails, and the refresh may be a conditional
	// request (not for one purged by tag, nor a hit-for-pass record).
	allowStale bool
}

// decide chooses what to do with e for rq.
func (m *Middleware) decide(ctx context.Context, rq *request, e *entry) decision {
	rec := e.rec
	switch {
	case rec == nil:
		switch {
		case rq.cc.noStore:
			return decision{act: actForward, status: m.status.fwd[e.miss][0][0]}
		case rq.cc.onlyIfCached:
			return decision{act: actOnlyIfCached}
		}
		return decision{act: actLoad, reason: e.miss}
	case rec.kind == kindPass:
		if m.cfg.clock.Now().Sub(rec.storedAt) < rec.fresh {
			// Hit-for-pass: the origin's last answer could not be stored;
			// go to it directly, concurrently with everybody else.
			return decision{act: actForward, status: m.status.hitForPass}
		}
		if rq.cc.onlyIfCached {
			return decision{act: actOnlyIfCached}
		}
		return decision{act: actRefresh} // try storing again, coalesced
	case rec.kind != kindResponse:
		return decision{act: actForward, status: m.status.bypass}
	case e.spec == nil && rq.has(rqKeyHeader):
		// Stored for requests without key headers; this one may get a
		// different response.
		return decision{act: actReload, reason: fwdVaryMiss}
	case rq.has(rqAuth) && !rec.shared():
		// RFC 9111, Section 3.5: only responses that say so answer requests
		// with Authorization. Its own response is not stored (buildRecord).
		return decision{act: actForward, status: m.status.fwd[fwdRequest][0][0]}
	case !m.tagsCurrent(ctx, rec):
		return decision{act: actRefresh} // purged: never served, even stale
	}
	now := m.cfg.clock.Now()
	if rec.noCache() && e.how != howHit {
		// A no-cache response the origin has just sent or confirmed
		// for the load or refresh this request waited on: validated
		// for it.
		return decision{act: actServe, status: m.statusFor(e.how), now: now}
	}
	age := rec.age(now)
	accepts := requestAccepts(rq, rec, age)
	if age < rec.fresh {
		if accepts {
			return decision{act: actServe, status: m.statusFor(e.how), now: now}
		}
		return decision{act: actReload, reason: fwdRequest} // the client wants a newer one
	}
	if accepts && !rec.noStale() && age-rec.fresh < rec.swr && !rq.cc.noStore {
		return decision{act: actServeStale, now: now}
	}
	if rq.cc.onlyIfCached {
		return decision{act: actOnlyIfCached}
	}
	return decision{act: actRefresh, allowStale: true}
}

// requestAccepts applies the request's max-age and min-fresh directives.
func requestAccepts(rq *request, rec *Response, age time.Duration) bool {
	if rq.cc.maxAge >= 0 && age > seconds(rq.cc.maxAge) {
		return false
	}
	if rq.cc.minFresh >= 0 && rec.fresh-age < seconds(rq.cc.minFresh) {
		return false
	}
	return true
}

// withinStaleIfError reports whether rec may answer at now because the
// origin failed (stale-if-error).
func (m *Middleware) withinStaleIfError(rec *Response, now time.Time) bool {
	return !rec.noStale() && rec.age(now)-rec.fresh < rec.sie
}

func (m *Middleware) statusFor(h how) cacheStatus {
	switch h {
	case howCollapsedURI:
		return m.status.fwd[fwdURIMiss][1][1]
	case howCollapsedVary:
		return m.status.fwd[fwdVaryMiss][1][1]
	case howCollapsedStale:
		return m.status.fwd[fwdStale][1][1]
	}
	return m.status.hit
}
