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
	h.answer(w, rq, c, rec, err, p, reason)
}

// answer writes a loaded response to the client that ran the origin,
// unless it already went out (streamed, hijacked).
func (h *handler) answer(w http.ResponseWriter, rq *request, c *capture, rec *Response, err error, p plan, reason fwd) {
	m := h.m
	if c.passedThrough() {
		m.met.request(m.status.fwd[reason][0][0].out) // streamed: not stored
		return
	}
	now := m.cfg.clock()
	if p.staleOnErr && c.status >= 500 && m.withinStaleIfError(p.stale, now) {
		m.writeRecord(w, rq, p.stale, now, m.status.staleIfError)
		return
	}
	if rec != nil && err == nil {
		m.writeRecord(w, rq, rec, now, m.status.fwd[reason][1][0])
		return
	}
	m.writeCaptured(w, rq, c, m.status.fwd[reason][0][0])
}

// load runs the origin handler on a capturing writer (passing through to w
// when the response turns out unstorable; w is nil in background refreshes),
// builds the stored response and places it as p says. It returns the
// capture, the stored response (nil if none) and the value for tiered to
// store under the loaded key (or a passError).
func (h *handler) load(ctx context.Context, w http.ResponseWriter, rq *request, p plan, reason fwd) (c *capture, rec, v *Response, err error) {
	m := h.m
	epoch, epochOK := m.generation(ctx, epochKey)
	status := m.status.fwd[reason][0][0]
	c = newCapture(w, m.cfg.maxBody, func(h http.Header) { addStatus(h, status.field) })
	c.storable = m.mayStore
	reqTime := m.cfg.clock()
	h.next.ServeHTTP(c, originRequest(rq))
	c.finish()
	respTime := m.cfg.clock()
	rec, vary := m.buildRecord(rq, c, reqTime, respTime)
	if rq.r.Context().Err() != nil {
		// The client went away (or Close stopped a refresh) while the
		// handler ran: what it wrote may be cut short.
		rec = nil
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
			rec = nil
		}
	}
	if rec == nil {
		return c, nil, nil, &passError{status: c.status}
	}
	v, err = h.place(ctx, rq, p, rec, vary)
	if err != nil {
		return c, nil, nil, err
	}
	m.met.stored.Add(1)
	return c, rec, v, nil
}

// originRequest is the request the origin handler sees on a load: without
// the client's validators (the cache wants a full response to store; it
// answers the validators itself) and without ignored query parameters.
// rq.r is not modified.
func originRequest(rq *request) *http.Request {
	r := rq.r
	if !rq.has(rqConditional) && !rq.u.stripped {
		return r
	}
	r2 := r.WithContext(r.Context())
	if rq.has(rqConditional) {
		r2.Header = r.Header.Clone()
		delete(r2.Header, "If-None-Match")
		delete(r2.Header, "If-Modified-Since")
	}
	stripQuery(r2, &rq.u)
	return r2
}

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
