package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// how says how a stored response was found, for its Cache-Status.
type how uint8

const (
	howHit            how = iota // found in the cache
	howCollapsedURI              // another request loaded it just now (URL miss)
	howCollapsedVary             // another request loaded it just now (variant miss)
	howCollapsedStale            // another request refreshed it just now
)

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

// planKind says what a load is for, hence where its result is stored.
type planKind uint8

const (
	planURL       planKind = iota // nothing stored for the URL: store under the URL key
	planVariant                   // the URL's vary spec had no response for these values
	planSuccessor                 // a stale response is being replaced
	planDirect                    // a load that bypassed the lookup (request no-cache, key headers)
)

type plan struct {
	kind planKind
	u    requestURL
	spec *Response // the URL's vary spec, if any (planVariant, planSuccessor)
	key  string    // planSuccessor: the key of the stale response
	// planSuccessor: the stale response, and whether it may answer if the
	// origin fails (stale-if-error).
	stale      *Response
	staleOnErr bool
}

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

// serveCached answers a GET or HEAD request that the cache may handle.
//
//  1. Request no-cache or max-age=0: go to the origin, store the result.
//  2. Look the URL key up. Nothing: load it (one origin call per cluster).
//  3. A vary spec: look up the variant its fields select. Nothing: load it.
//     A plain response but the request carries key headers: go to the
//     origin and store the result under a vary spec.
//  4. Serve the response found (serveRecord).
func (h *handler) serveCached(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL) {
	m := h.m
	ctx := r.Context()
	if ri.cc.noCache || ri.cc.maxAge == 0 {
		h.loadDirect(w, r, ri, u, fwdRequest)
		return
	}
	rec, ok := m.lookup(ctx, u.key)
	found := howHit
	if !ok {
		res, done := h.miss(w, r, ri, u, plan{kind: planURL, u: *u}, u.key, fwdURIMiss)
		if done {
			return
		}
		rec, found = res, howCollapsedURI
	}
	var spec *Response
	key := u.key
	switch rec.kind {
	case kindVary:
		spec = rec
		key = variantKey(u.key, spec, r.Header)
		rec, ok = m.lookup(ctx, key)
		if !ok {
			res, done := h.miss(w, r, ri, u, plan{kind: planVariant, u: *u, spec: spec}, key, fwdVaryMiss)
			if done {
				return
			}
			rec, found = res, howCollapsedVary
		}
		if rec.kind != kindResponse {
			h.forward(w, r, ri, u, m.status.bypass, nil)
			return
		}
	case kindResponse:
		if ri.has(rqKeyHeader) {
			// Stored for requests without key headers; this one may get a
			// different response.
			h.loadDirect(w, r, ri, u, fwdVaryMiss)
			return
		}
	default:
		h.forward(w, r, ri, u, m.status.bypass, nil)
		return
	}
	h.serveRecord(w, r, ri, u, spec, key, rec, found, 0)
}

// miss loads key after a lookup found nothing. It returns the stored
// response a concurrent load produced, or done when the request was
// answered (it ran the origin itself, or went to it because the shared
// load's result was not for it).
func (h *handler) miss(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, p plan, key string, reason fwd) (*Response, bool) {
	m := h.m
	if ri.head || ri.cc.noStore {
		h.forward(w, r, ri, u, m.status.fwd[reason][0][0], nil)
		return nil, true
	}
	if ri.cc.onlyIfCached {
		m.gatewayTimeout(w)
		return nil, true
	}
	res := h.fill(w, r, ri, u, p, key, reason)
	switch {
	case res.done:
		return nil, true
	case res.rec == nil:
		h.fallback(w, r, ri, u, reason, res.err, nil)
		return nil, true
	}
	return res.rec, false
}

// serveRecord answers with a stored response if it may (RFC 9111, Section
// 4): fresh, or stale within stale-while-revalidate (refreshed in the
// background); otherwise it is replaced through the origin.
func (h *handler) serveRecord(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, spec *Response, key string, rec *Response, found how, depth int) {
	m := h.m
	if ri.has(rqAuth) && !rec.shared() {
		// RFC 9111, Section 3.5: only responses that say so answer requests
		// with Authorization. Its own response is not stored (buildRecord).
		h.forward(w, r, ri, u, m.status.fwd[fwdRequest][0][0], nil)
		return
	}
	if !m.tagsCurrent(r.Context(), rec) {
		h.refresh(w, r, ri, u, spec, key, rec, false, depth) // purged: never served, even stale
		return
	}
	now := m.cfg.clock()
	age := rec.age(now)
	accepts := requestAccepts(ri, rec, age)
	if age < rec.fresh {
		if accepts {
			m.writeRecord(w, r, ri, rec, now, m.statusFor(found))
			return
		}
		h.loadDirect(w, r, ri, u, fwdRequest) // the client wants a newer one
		return
	}
	if accepts && !rec.noStale() && age-rec.fresh < rec.swr && !ri.cc.noStore {
		if !ri.head {
			h.refreshInBackground(r, ri, u, spec, key, rec)
		}
		m.writeRecord(w, r, ri, rec, now, m.status.hitStale)
		return
	}
	if ri.cc.onlyIfCached {
		m.gatewayTimeout(w)
		return
	}
	h.refresh(w, r, ri, u, spec, key, rec, true, depth)
}

// requestAccepts applies the request's max-age and min-fresh directives.
func requestAccepts(ri *reqInfo, rec *Response, age time.Duration) bool {
	if ri.cc.maxAge >= 0 && age > seconds(ri.cc.maxAge) {
		return false
	}
	if ri.cc.minFresh >= 0 && rec.fresh-age < seconds(ri.cc.minFresh) {
		return false
	}
	return true
}

// refresh replaces the stale (or purged) response rec under key through the
// origin, answering this request with the result. Every node that finds rec
// stale loads the same successor key, so one origin call per cluster
// replaces it. With allowStale, stale-if-error may answer with rec when the
// origin fails.
func (h *handler) refresh(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, spec *Response, key string, rec *Response, allowStale bool, depth int) {
	m := h.m
	var fallback *Response
	if allowStale && !rec.noStale() && rec.sie > 0 {
		fallback = rec
	}
	if ri.head || ri.cc.noStore || depth > 0 {
		h.forward(w, r, ri, u, m.status.fwd[fwdStale][0][0], fallback)
		return
	}
	p := plan{kind: planSuccessor, u: *u, spec: spec, key: key, stale: rec, staleOnErr: fallback != nil}
	res := h.fill(w, r, ri, u, p, successorKey(key, rec.id), fwdStale)
	if res.rec != nil && res.rec.kind == kindMoved {
		res.rec = m.awaitMoved(r.Context(), key, rec.id, res.rec.id)
	}
	switch {
	case res.done:
		return
	case res.rec != nil && res.rec.kind == kindResponse:
		h.serveRecord(w, r, ri, u, spec, key, res.rec, howCollapsedStale, depth+1)
		return
	}
	var pe *passError
	if fallback != nil && errors.As(res.err, &pe) && pe.status >= 500 {
		if now := m.cfg.clock(); m.withinStaleIfError(fallback, now) {
			m.writeRecord(w, r, ri, fallback, now, m.status.staleIfError)
			return
		}
	}
	h.fallback(w, r, ri, u, fwdStale, res.err, fallback)
}

// movedWait bounds how long a request waits for its node to see a
// refreshed response another node stored (the bus normally takes well
// under a millisecond).
const movedWait = 250 * time.Millisecond

// awaitMoved reads the response that replaced the stale one (staleID)
// under key: id when the refresh stored it there. This node may still hold
// the stale one until the other node's invalidation arrives, so it polls
// briefly. It returns nil when key holds neither (purged meanwhile) or the
// wait ends: the request then goes to the origin itself.
func (m *Middleware) awaitMoved(ctx context.Context, key string, staleID, id uint64) *Response {
	deadline := time.Now().Add(movedWait)
	poll := time.Millisecond
	for {
		cur, ok := m.lookup(ctx, key)
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

func (m *Middleware) withinStaleIfError(rec *Response, now time.Time) bool {
	return !rec.noStale() && rec.age(now)-rec.fresh < rec.sie
}

// fallback answers a request whose shared load gave it nothing to serve:
// it goes to the origin itself, storing nothing.
func (h *handler) fallback(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, reason fwd, err error, stale *Response) {
	m := h.m
	if errors.Is(err, tiered.ErrClosed) {
		h.forward(w, r, ri, u, m.status.bypass, stale)
		return
	}
	h.forward(w, r, ri, u, m.status.fwd[reason][0][0], stale)
}

func (m *Middleware) gatewayTimeout(w http.ResponseWriter) {
	m.met.request(m.status.onlyIfCached.out)
	w.Header()["Cache-Status"] = m.status.onlyIfCached.field
	w.WriteHeader(http.StatusGatewayTimeout)
}

// lookup reads key without loading it. A failing L2 is a miss (the load
// that follows degrades to the origin).
func (m *Middleware) lookup(ctx context.Context, key string) (*Response, bool) {
	v, ok, err := m.cache.Get(ctx, key)
	if err != nil || !ok || v == nil {
		return nil, false
	}
	return v, true
}

// tagsCurrent reports whether every tag of rec still has the generation it
// had when rec was stored (no PurgeTag since).
func (m *Middleware) tagsCurrent(ctx context.Context, rec *Response) bool {
	for i := range rec.tags {
		g, ok := m.generation(ctx, rec.tags[i].key)
		if !ok || g != rec.tags[i].gen {
			return false
		}
	}
	return true
}

// ---- Loads ----

// fillResult is the outcome of a shared load for one request.
type fillResult struct {
	done bool      // this request ran the origin and was answered
	rec  *Response // the stored result of someone's load
	err  error
}

// job asks the request that started a flight to run the origin handler on
// its own goroutine (where http.ResponseController, panics and the request
// context behave as the handler expects).
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

// fill loads key through tiered.Cache.GetOrLoad, so that concurrent misses
// of one key make one origin call per cluster. If this request's loader is
// the one called, it runs the origin handler here, answers its own client
// with what the handler wrote and gives the stored result (or a passError)
// to the waiting requests. Otherwise it returns what the shared load
// produced.
func (h *handler) fill(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, p plan, key string, reason fwd) fillResult {
	mc := &missCall{jobs: make(chan *job), gone: make(chan struct{})}
	defer close(mc.gone)
	gctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	results := make(chan fillResult, 1)
	go func() {
		v, err := h.m.cache.GetOrLoad(gctx, key, mc.load)
		results <- fillResult{rec: v, err: err}
	}()
	select {
	case j := <-mc.jobs:
		h.lead(w, r, ri, u, p, j, reason)
		// Wait for the flight to store the result, so that this client's
		// next request finds it (read-your-writes).
		<-results
		return fillResult{done: true}
	case res := <-results:
		if res.err != nil && r.Context().Err() != nil {
			return fillResult{done: true} // the client went away
		}
		if res.err == nil && res.rec == nil {
			res.err = errors.New("middleware: empty load result")
		}
		return res
	}
}

// lead runs the origin for a flight this request started.
func (h *handler) lead(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, p plan, j *job, reason fwd) {
	replied := false
	defer func() {
		if !replied { // the handler panicked: waiters go to the origin
			j.reply <- fillResult{err: errOrigin}
		}
	}()
	c, rec, v, err := h.load(r.Context(), w, r, ri, u, p, reason)
	j.reply <- fillResult{rec: v, err: err}
	replied = true
	h.answer(w, r, ri, c, rec, err, p, reason)
}

// loadDirect runs the origin for this request alone (no lookup, no
// coalescing) and stores the result if it may.
func (h *handler) loadDirect(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, reason fwd) {
	if ri.head || ri.cc.noStore {
		h.forward(w, r, ri, u, h.m.status.fwd[reason][0][0], nil)
		return
	}
	p := plan{kind: planDirect, u: *u}
	c, rec, _, err := h.load(r.Context(), w, r, ri, u, p, reason)
	h.answer(w, r, ri, c, rec, err, p, reason)
}

// answer writes a loaded response to the client that ran the origin,
// unless it already went out (streamed, hijacked).
func (h *handler) answer(w http.ResponseWriter, r *http.Request, ri *reqInfo, c *capture, rec *Response, err error, p plan, reason fwd) {
	m := h.m
	if c.passedThrough() {
		m.met.request(m.status.fwd[reason][0][0].out) // streamed: not stored
		return
	}
	now := m.cfg.clock()
	if p.staleOnErr && c.status >= 500 && m.withinStaleIfError(p.stale, now) {
		m.writeRecord(w, r, ri, p.stale, now, m.status.staleIfError)
		return
	}
	if rec != nil && err == nil {
		m.writeRecord(w, r, ri, rec, now, m.status.fwd[reason][1][0])
		return
	}
	m.writeCaptured(w, ri, c, m.status.fwd[reason][0][0])
}

// load runs the origin handler on a capturing writer (passing through to w
// when the response turns out unstorable; w is nil in background refreshes),
// builds the stored response and places it as p says. It returns the
// capture, the stored response (nil if none) and the value for tiered to
// store under the loaded key (or a passError).
func (h *handler) load(ctx context.Context, w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, p plan, reason fwd) (c *capture, rec, v *Response, err error) {
	m := h.m
	epoch, epochOK := m.generation(ctx, epochKey)
	status := m.status.fwd[reason][0][0]
	c = newCapture(w, m.cfg.maxBody, func(h http.Header) { addStatus(h, status.field) })
	reqTime := m.cfg.clock()
	h.serveOrigin(c, h.originRequest(r, ri, u))
	c.finish()
	respTime := m.cfg.clock()
	rec, vary := m.buildRecord(ri, c, reqTime, respTime)
	if r.Context().Err() != nil {
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
	v, err = h.place(ctx, r, ri, p, rec, vary)
	if err != nil {
		return c, nil, nil, err
	}
	m.met.stored.Add(1)
	return c, rec, v, nil
}

// serveOrigin calls the handler.
func (h *handler) serveOrigin(c *capture, r *http.Request) {
	h.next.ServeHTTP(c, r)
}

// originRequest is the request the origin handler sees on a load: without
// the client's validators (the cache wants a full response to store; it
// answers the validators itself) and without ignored query parameters. r is
// not modified.
func (h *handler) originRequest(r *http.Request, ri *reqInfo, u *requestURL) *http.Request {
	if !ri.has(rqConditional) && !u.stripped {
		return r
	}
	r2 := r.WithContext(r.Context())
	if ri.has(rqConditional) {
		r2.Header = r.Header.Clone()
		delete(r2.Header, "If-None-Match")
		delete(r2.Header, "If-Modified-Since")
	}
	stripQuery(r2, u)
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

// place decides what tiered stores under the loaded key for a storable
// response rec, writing what else the plan needs (the variant of a new vary
// spec, the replaced key of a successor).
func (h *handler) place(ctx context.Context, r *http.Request, ri *reqInfo, p plan, rec *Response, vary []string) (*Response, error) {
	m := h.m
	pass := &passError{status: rec.status}
	switch p.kind {
	case planURL:
		if len(vary) == 0 && !ri.has(rqKeyHeader) {
			return rec, nil
		}
		names := m.specNames(vary)
		if len(names) > maxVaryNames {
			return nil, pass
		}
		spec := &Response{kind: kindVary, id: newID(), vary: names}
		if err := m.cache.Set(ctx, variantKey(p.u.key, spec, r.Header), rec); err != nil {
			m.cfg.onError(ctx, fmt.Errorf("middleware: storing a variant of %s: %w", r.URL, err))
			return nil, pass
		}
		return spec, nil
	case planVariant:
		if !slices.Equal(m.specNames(vary), p.spec.vary) {
			// The origin changed what it varies on: forget the spec, the
			// next request stores the new one.
			m.delete(ctx, p.u.key)
			return nil, pass
		}
		return rec, nil
	case planSuccessor:
		shapeOK := slices.Equal(m.specNames(vary), p.spec.varyOrNil())
		if p.spec == nil {
			shapeOK = len(vary) == 0 && !ri.has(rqKeyHeader)
		}
		if !shapeOK {
			m.delete(ctx, p.u.key)
			return nil, pass
		}
		// Replace the stale response only if it is still there: a purge
		// or a newer response that landed meanwhile wins.
		if cur, ok := m.lookup(ctx, p.key); ok && cur.id == p.stale.id {
			err := m.cache.Set(ctx, p.key, rec)
			if err == nil || errors.Is(err, tiered.ErrInvalidation) {
				// The successor key only says where the response went, so
				// it is not stored twice; waiters read it from there.
				return &Response{kind: kindMoved, id: rec.id}, nil
			}
			m.cfg.onError(ctx, fmt.Errorf("middleware: storing the refreshed %s: %w", r.URL, err))
		}
		return rec, nil
	case planDirect:
		if err := m.storeDirect(ctx, r, ri, p.u, rec, vary); err != nil {
			m.cfg.onError(ctx, fmt.Errorf("middleware: storing %s: %w", r.URL, err))
			return nil, pass
		}
		return rec, nil
	}
	return nil, pass
}

func (r *Response) varyOrNil() []string {
	if r == nil {
		return nil
	}
	return r.vary
}

// storeDirect stores rec for the URL outside a load of its key: under the
// URL's vary spec if it has the right one, else under the URL key (no Vary,
// no key headers), else under a new vary spec.
func (m *Middleware) storeDirect(ctx context.Context, r *http.Request, ri *reqInfo, u requestURL, rec *Response, vary []string) error {
	names := m.specNames(vary)
	cur, ok := m.lookup(ctx, u.key)
	switch {
	case ok && cur.kind == kindVary && slices.Equal(cur.vary, names):
		return m.cache.Set(ctx, variantKey(u.key, cur, r.Header), rec)
	case len(vary) == 0 && !ri.has(rqKeyHeader):
		return m.cache.Set(ctx, u.key, rec)
	case len(names) > maxVaryNames:
		return fmt.Errorf("middleware: %d vary names, limit %d", len(names), maxVaryNames)
	}
	spec := &Response{kind: kindVary, id: newID(), vary: names}
	if err := m.cache.Set(ctx, variantKey(u.key, spec, r.Header), rec); err != nil {
		return err
	}
	return m.cache.Set(ctx, u.key, spec)
}

func (m *Middleware) delete(ctx context.Context, key string) {
	if err := m.cache.Delete(ctx, key); err != nil {
		m.cfg.onError(ctx, fmt.Errorf("middleware: deleting a stored response: %w", err))
	}
}

// forward sends the request to the origin for this client alone, storing
// nothing. With a stale fallback, the response is captured first so that a
// 5xx can be replaced by the stale response (stale-if-error). It counts the
// request's outcome.
func (h *handler) forward(w http.ResponseWriter, r *http.Request, ri *reqInfo, u *requestURL, status cacheStatus, stale *Response) {
	m := h.m
	or := r
	if u.stripped {
		or = r.WithContext(r.Context())
		stripQuery(or, u)
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
	now := m.cfg.clock()
	if c.status >= 500 && m.withinStaleIfError(stale, now) {
		m.writeRecord(w, r, ri, stale, now, m.status.staleIfError)
		return
	}
	m.writeCaptured(w, ri, c, status)
}

// refreshInBackground replaces a stale response served under
// stale-while-revalidate: at most one refresh per response per node (and,
// through the successor key's lease, per cluster), on a goroutine Close
// stops and waits for.
func (h *handler) refreshInBackground(r *http.Request, ri *reqInfo, u *requestURL, spec *Response, key string, rec *Response) {
	m := h.m
	sk := successorKey(key, rec.id)
	if _, busy := m.refreshing.LoadOrStore(sk, struct{}{}); busy {
		return
	}
	release := func() { m.refreshing.Delete(sk) }
	select {
	case m.slots <- struct{}{}:
	default:
		release()
		return
	}
	if !m.track() {
		<-m.slots
		release()
		return
	}
	// A detached copy of the request: the client's may be gone by the time
	// the origin runs.
	br := r.Clone(context.Background())
	br.Body, br.ContentLength = http.NoBody, 0
	bri := *ri
	uc := *u
	p := plan{kind: planSuccessor, u: uc, spec: spec, key: key, stale: rec}
	go func() {
		defer m.wg.Done()
		defer func() { <-m.slots; release() }()
		_, err := m.cache.GetOrLoad(m.closing, sk, func(ctx context.Context, _ string) (*Response, error) {
			if !m.track() {
				return nil, ErrClosed
			}
			defer m.wg.Done()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(m.closing, cancel)
			defer stop()
			_, _, v, err := h.load(ctx, nil, br.WithContext(ctx), &bri, &uc, p, fwdStale)
			return v, err
		})
		var pe *passError
		if err != nil && !errors.As(err, &pe) && !errors.Is(err, ErrClosed) && !errors.Is(err, tiered.ErrClosed) && m.closing.Err() == nil {
			m.cfg.onError(m.closing, fmt.Errorf("middleware: refreshing %s in the background: %w", br.URL, err))
		}
	}()
}
