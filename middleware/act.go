package middleware

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// Stage 4: act on the decision. Serving answers from the stored response
// (answer.go); loads go through tiered so that one origin call per cluster
// serves every request for a key (fill.go); forwarding runs the origin for
// one request and stores nothing.

// act carries out d for rq. done is true when the request was answered;
// otherwise the returned entry holds a response another request's load or
// refresh just stored, for decide to judge.
func (h *handler) act(w http.ResponseWriter, rq *request, e entry, d decision) (next entry, done bool) {
	m := h.m
	switch d.act {
	case actServe:
		m.writeRecord(w, rq, e.rec, d.now, d.status)
	case actServeStale:
		if !rq.head {
			h.refreshInBackground(rq, e)
		}
		m.writeRecord(w, rq, e.rec, d.now, m.status.hitStale)
	case actForward:
		h.forward(w, rq, d.status, nil)
	case actOnlyIfCached:
		m.gatewayTimeout(w)
	case actReload:
		h.loadDirect(w, rq, d.reason)
	case actLoad:
		return h.loadMiss(w, rq, e)
	case actRefresh:
		return h.refresh(w, rq, e, d.allowStale)
	}
	return e, true
}

// loadMiss loads e's key after the lookup found nothing (one origin call
// per cluster). It returns the stored response a concurrent load produced,
// or done when the request was answered (it ran the origin itself, or went
// to it because the shared load's result was not for it).
func (h *handler) loadMiss(w http.ResponseWriter, rq *request, e entry) (entry, bool) {
	p := plan{kind: planURL, u: rq.u}
	if e.miss == fwdVaryMiss {
		p = plan{kind: planVariant, u: rq.u, spec: e.spec}
	}
	res := h.fill(w, rq, p, e.key, e.miss)
	switch {
	case res.done:
		return e, true
	case res.rec == nil:
		h.fallback(w, rq, e.miss, res.err, nil)
		return e, true
	}
	e.rec = res.rec
	if e.miss == fwdURIMiss {
		e.how = howCollapsedURI
		return h.m.lookupVariant(rq.r.Context(), rq, e), false
	}
	e.how = howCollapsedVary
	return e, false
}

// refresh replaces the stale (or purged) response e.rec through the origin,
// answering this request with the result. Every node that finds e.rec
// stale loads the same successor key, so one origin call per cluster
// replaces it. With allowStale, stale-if-error may answer with e.rec when
// the origin fails.
func (h *handler) refresh(w http.ResponseWriter, rq *request, e entry, allowStale bool) (entry, bool) {
	m := h.m
	rec := e.rec
	var fallback *Response
	if allowStale && !rec.noStale() && rec.sie > 0 {
		fallback = rec
	}
	if rq.head || rq.cc.noStore || e.refreshed > 0 {
		h.forward(w, rq, m.status.fwd[fwdStale][0][0], fallback)
		return e, true
	}
	p := plan{kind: planSuccessor, u: rq.u, spec: e.spec, key: e.key, stale: rec, staleOnErr: fallback != nil, validate: allowStale}
	res := h.fill(w, rq, p, successorKey(e.key, rec.id), fwdStale)
	if res.rec != nil && res.rec.kind == kindMoved {
		res.rec = m.awaitMoved(rq.r.Context(), e.key, rec.id)
	}
	switch {
	case res.done:
		return e, true
	case res.rec != nil && (res.rec.kind == kindResponse || res.rec.kind == kindPass):
		e.rec, e.how = res.rec, howCollapsedStale
		e.refreshed++
		return e, false
	}
	var pe *passError
	if fallback != nil && errors.As(res.err, &pe) && pe.status >= 500 {
		if now := m.cfg.clock.Now(); m.withinStaleIfError(fallback, now) {
			m.writeRecord(w, rq, fallback, now, m.status.staleIfError)
			return e, true
		}
	}
	h.fallback(w, rq, fwdStale, res.err, fallback)
	return e, true
}

// movedWait bounds how long a request waits for its node to see a
// refreshed response another node stored (the bus normally takes well
// under a millisecond).
const movedWait = 250 * time.Millisecond

// awaitMoved reads the response that replaced the stale one (staleID)
// under key. It reads L2 (GetVersioned), where the refresh wrote it before
// handing over; it polls briefly in case that read fails or races. It returns nil when key holds
// neither (purged meanwhile) or the wait ends: the request then goes to the
// origin itself.
func (m *Middleware) awaitMoved(ctx context.Context, key string, staleID uint64) *Response {
	deadline := time.Now().Add(movedWait)
	poll := time.Millisecond
	for {
		cur, _, ok, err := m.cache.GetVersioned(ctx, key)
		if err != nil || cur == nil {
			ok = false
		}
		switch {
		case !ok:
			return nil
		case cur.id != staleID:
			return cur // the refreshed response, or an even newer one
		case time.Now().After(deadline):
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		poll = min(2*poll, 16*time.Millisecond)
	}
}

// loadDirect runs the origin for this request alone (no lookup, no
// coalescing) and stores the result if it may.
func (h *handler) loadDirect(w http.ResponseWriter, rq *request, reason fwd) {
	if rq.head || rq.cc.noStore {
		h.forward(w, rq, h.m.status.fwd[reason][0][0], nil)
		return
	}
	p := plan{kind: planDirect, u: rq.u}
	c, rec, v, err := h.load(rq.r.Context(), w, rq, p, reason)
	h.answer(w, rq, c, rec, isStored(v, err), p, reason)
}

// fallback answers a request whose shared load gave it nothing to serve:
// it goes to the origin itself, storing nothing.
func (h *handler) fallback(w http.ResponseWriter, rq *request, reason fwd, err error, stale *Response) {
	m := h.m
	if errors.Is(err, tiered.ErrClosed) {
		h.forward(w, rq, m.status.bypass, stale)
		return
	}
	h.forward(w, rq, m.status.fwd[reason][0][0], stale)
}

// forward sends the request to the origin for this client alone, storing
// nothing. With a stale fallback, the response is captured first so that a
// 5xx can be replaced by the stale response (stale-if-error). It counts the
// request's outcome.
func (h *handler) forward(w http.ResponseWriter, rq *request, status cacheStatus, stale *Response) {
	m := h.m
	or := rq.r
	if rq.u.stripped || m.capability != "" {
		or = rq.r.WithContext(rq.r.Context())
		stripQuery(or, &rq.u)
	}
	if m.capability != "" {
		or.Header = rq.r.Header.Clone()
		m.addCapability(or.Header)
	}
	if stale == nil {
		m.met.request(status.out)
		addStatus(w.Header(), status.field)
		h.next.ServeHTTP(w, or)
		return
	}
	c := newCapture(w, m.cfg.maxBody, func(h http.Header) { addStatus(h, status.field) })
	h.next.ServeHTTP(c, or)
	c.finish()
	if c.passedThrough() {
		m.met.request(status.out)
		return
	}
	now := m.cfg.clock.Now()
	if c.status >= 500 && m.withinStaleIfError(stale, now) {
		m.writeRecord(w, rq, stale, now, m.status.staleIfError)
		return
	}
	m.writeCaptured(w, rq, c, status)
}
