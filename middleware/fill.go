package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Loads: the origin handler runs for a key through tiered.Cache.GetOrLoad,
// so that concurrent misses of one key make one origin call per cluster.
// The request whose loader tiered calls runs the handler on its own
// goroutine (where http.ResponseController, panics and the request context
// behave as the handler expects), answers its client, and hands the stored
// result to the waiting requests.

// passError is a load whose response was not stored. Requests that waited
// for it go to the origin themselves: it was produced for another request
// and must not answer theirs.
type passError struct{ status int }

func (e *passError) Error() string {
	return fmt.Sprintf("middleware: origin response (status %d) not stored", e.status)
}

var (
	errLeaderGone = errors.New("middleware: the request running the origin went away")
	errOrigin     = errors.New("middleware: the origin handler panicked")
)

// fillResult is the outcome of a shared load for one request.
type fillResult struct {
	done bool      // this request ran the origin and was answered
	rec  *Response // the stored result of someone's load
	err  error
}

// job asks the request that started a flight to run the origin handler on
// its own goroutine.
type job struct{ reply chan fillResult }

// missCall connects the loader tiered calls (on its flight goroutine) with
// the request that started the flight.
type missCall struct {
	jobs chan *job
	gone chan struct{} // closed when the request stops listening
}

func (mc *missCall) load(ctx context.Context, _ string) (*Response, error) {
	j := &job{reply: make(chan fillResult, 1)}
	select {
	case mc.jobs <- j:
	case <-mc.gone:
		return nil, errLeaderGone
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	select {
	case res := <-j.reply:
		return res.rec, res.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// fill loads key through tiered.Cache.GetOrLoad. If this request's loader
// is the one called, it runs the origin handler here, answers its own
// client with what the handler wrote and gives the stored result (or a
// passError) to the waiting requests. Otherwise it returns what the shared
// load produced.
func (h *handler) fill(w http.ResponseWriter, rq *request, p plan, key string, reason fwd) fillResult {
	mc := &missCall{jobs: make(chan *job), gone: make(chan struct{})}
	defer close(mc.gone)
	ctx := rq.r.Context()
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan fillResult, 1)
	go func() {
		v, err := h.m.cache.GetOrLoad(gctx, key, mc.load)
		results <- fillResult{rec: v, err: err}
	}()
	select {
	case j := <-mc.jobs:
		h.lead(w, rq, p, j, reason)
		// Wait for the flight to store the result, so that this client's
		// next request finds it (read-your-writes).
		<-results
		return fillResult{done: true}
	case res := <-results:
		if res.err != nil && ctx.Err() != nil {
			return fillResult{done: true} // the client went away
		}
		if res.err == nil && res.rec == nil {
			res.err = errors.New("middleware: empty load result")
		}
		return res
	}
}

// lead runs the origin for a flight this request started.
func (h *handler) lead(w http.ResponseWriter, rq *request, p plan, j *job, reason fwd) {
	replied := false
	defer func() {
		if !replied { // the handler panicked: waiters go to the origin
			j.reply <- fillResult{err: errOrigin}
		}
	}()
	c, rec, v, err := h.load(rq.r.Context(), w, rq, p, reason)
	j.reply <- fillResult{rec: v, err: err}
	replied = true
	h.answer(w, rq, c, rec, isStored(v, err), p, reason)
}

// answer writes a loaded response to the client that ran the origin,
// unless it already went out (streamed, hijacked). rec is the response to
// answer with (nil: the captured one); stored says whether it was stored.
func (h *handler) answer(w http.ResponseWriter, rq *request, c *capture, rec *Response, stored bool, p plan, reason fwd) {
	m := h.m
	if c.passedThrough() {
		m.met.request(m.status.fwd[reason][0][0].out) // streamed: not stored
		return
	}
	now := m.cfg.clock.Now()
	if p.staleOnErr && c.status >= 500 && m.withinStaleIfError(p.stale, now) {
		m.writeRecord(w, rq, p.stale, now, m.status.staleIfError)
		return
	}
	if rec != nil {
		status := m.status.fwd[reason][b2i(stored)][0]
		if c.status == http.StatusNotModified && p.kind == planSuccessor {
			status = m.status.validated[b2i(stored)]
		}
		m.writeRecord(w, rq, rec, now, status)
		return
	}
	m.writeCaptured(w, rq, c, m.status.fwd[reason][0][0])
}

// isStored reports whether a load's result (value v, error err) stored a
// response.
func isStored(v *Response, err error) bool {
	return err == nil && v != nil && v.kind != kindPass
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// load runs the origin handler on a capturing writer (passing through to w
// when the response turns out unstorable; w is nil in background refreshes),
// builds the stored response and places it as p says. It returns the
// capture, the response to answer with (stored when err is nil), and the
// value for tiered to store under the loaded key (or a passError).
//
// A refresh of a stale response with validators asks the origin
// conditionally (RFC 9111, Section 4.3.1); a 304 updates the stored
// response's header (Section 4.3.4) and keeps its body. A HEAD miss loads
// the GET response, so HEAD and GET misses share one origin call.
func (h *handler) load(ctx context.Context, w http.ResponseWriter, rq *request, p plan, reason fwd) (c *capture, rec, v *Response, err error) {
	m := h.m
	epoch, epochOK := m.generation(ctx, epochKey)
	validate := p.kind == planSuccessor && p.validate && p.stale.validatable()
	var answerWith *Response // a revalidated response that may not be stored
	var pass bool
	var vary []string
	for attempt := 0; ; attempt++ {
		var from *Response
		if validate {
			from = p.stale
		}
		c = h.runOrigin(w, rq, reason, from)
		reqTime, respTime := c.calledAt, m.cfg.clock.Now()
		if !validate || c.status != http.StatusNotModified {
			rec, vary, pass = m.buildRecord(rq, c, reqTime, respTime)
			break
		}
		var ok bool
		rec, vary, pass, answerWith, ok = m.revalidated(rq, p.stale, c, reqTime, respTime)
		if ok || attempt > 0 {
			break
		}
		// The 304 names another representation than the stored one: ask
		// again, unconditionally.
		validate = false
	}
	if rq.r.Context().Err() != nil {
		// The client went away (or Close stopped a refresh) while the
		// handler ran: what it wrote may be cut short.
		rec, answerWith, pass = nil, nil, false
	}
	if rec != nil && len(rec.tags) > 0 {
		// Tag generations after the load, and the epoch unchanged since
		// before it: else a purge ran meanwhile and what was loaded may
		// predate it.
		ok := epochOK
		for i := range rec.tags {
			g, gok := m.generation(ctx, rec.tags[i].key)
			rec.tags[i].gen, ok = g, ok && gok
		}
		if e, eok := m.generation(ctx, epochKey); !ok || !eok || e != epoch {
			rec, answerWith, pass = nil, nil, false
		}
	}
	if rec == nil {
		if pass {
			if hp := h.hitForPass(ctx, p); hp != nil {
				return c, answerWith, hp, nil
			}
		}
		return c, answerWith, nil, &passError{status: c.status}
	}
	v, err = h.place(ctx, rq, p, rec, vary)
	if err != nil {
		return c, answerWith, nil, err
	}
	m.met.stored.Add(1)
	if c.status == http.StatusNotModified {
		m.met.validated.Add(1)
	}
	return c, rec, v, nil
}

// runOrigin runs the origin handler for a load on a capture; with stale,
// the request carries stale's validators.
func (h *handler) runOrigin(w http.ResponseWriter, rq *request, reason fwd, stale *Response) *capture {
	m := h.m
	status := m.status.fwd[reason][0][0]
	if w != nil && rq.head {
		w = headWriter{w} // the origin answers a GET
	}
	c := newCapture(w, m.cfg.maxBody, func(h http.Header) { addStatus(h, status.field) })
	c.storable = func(code int, h http.Header) bool {
		return (stale != nil && code == http.StatusNotModified) || m.mayStore(code, h)
	}
	c.calledAt = m.cfg.clock.Now()
	or := m.originRequest(rq)
	if stale != nil {
		or = withValidators(or, rq.r, stale)
	}
	h.next.ServeHTTP(c, or)
	c.finish()
	return c
}

// hitForPass returns the record that remembers, for the plan's key, that
// the origin answered with a response that may not be stored (nil when
// hit-for-pass is off or the plan stores nothing under a URL or variant
// key). A refresh of an expired one replaces it conditionally.
func (h *handler) hitForPass(ctx context.Context, p plan) *Response {
	m := h.m
	if m.cfg.hitForPass <= 0 {
		return nil
	}
	hp := &Response{kind: kindPass, id: newID(), storedAt: m.cfg.clock.Now(), fresh: m.cfg.hitForPass}
	switch p.kind {
	case planURL, planVariant:
		return hp
	case planSuccessor:
		if p.stale.kind == kindPass && m.replace(ctx, p.key, p.stale.id, hp) {
			return hp
		}
	}
	return nil
}

// originRequest is the request the origin handler sees on a load: a GET
// (also for a HEAD miss), without the client's validators and Range (the
// cache wants a full response to store; it answers those itself), without
// ignored query parameters, and with this cache's Surrogate-Capability
// (WithSurrogateControl). rq.r is not modified.
func (m *Middleware) originRequest(rq *request) *http.Request {
	r := rq.r
	if !rq.has(rqConditional|rqRange) && !rq.u.stripped && !rq.head && m.capability == "" {
		return r
	}
	r2 := r.WithContext(r.Context())
	if rq.has(rqConditional|rqRange) || m.capability != "" {
		r2.Header = r.Header.Clone()
		for _, k := range [...]string{"If-None-Match", "If-Modified-Since", "Range", "If-Range"} {
			delete(r2.Header, k)
		}
		if m.capability != "" {
			m.addCapability(r2.Header)
		}
	}
	if rq.head {
		r2.Method = http.MethodGet
	}
	stripQuery(r2, &rq.u)
	return r2
}

// withValidators returns a copy of or (which may be the client's request
// r) asking the origin whether stale is still current: If-None-Match from
// its ETag, If-Modified-Since from its Last-Modified.
func withValidators(or, r *http.Request, stale *Response) *http.Request {
	if or == r {
		or = r.WithContext(r.Context())
	}
	or.Header = or.Header.Clone()
	for _, k := range [...]string{"If-None-Match", "If-Modified-Since", "Range", "If-Range"} {
		delete(or.Header, k)
	}
	if vs := stale.header["Etag"]; len(vs) > 0 {
		or.Header["If-None-Match"] = vs
	}
	if vs := stale.header["Last-Modified"]; len(vs) > 0 {
		or.Header["If-Modified-Since"] = vs
	}
	return or
}

// headWriter discards the body the origin writes for a GET loaded on
// behalf of a HEAD request.
type headWriter struct{ http.ResponseWriter }

func (w headWriter) Write(p []byte) (int, error)       { return len(p), nil }
func (w headWriter) WriteString(s string) (int, error) { return len(s), nil }
func (w headWriter) Unwrap() http.ResponseWriter       { return w.ResponseWriter }

// stripQuery gives r (a copy) the query without ignored parameters.
func stripQuery(r *http.Request, u *requestURL) {
	if !u.stripped {
		return
	}
	u2 := *r.URL
	u2.RawQuery = u.rawQuery
	r.URL = &u2
	if r.RequestURI != "" {
		r.RequestURI = u2.RequestURI()
	}
}
