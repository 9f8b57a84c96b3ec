package middleware

import (
	"context"
)

// Stage 2: look up what is stored for the request (RFC 9111, Section 4.1).
// The URL key holds either the response itself or, for a URL whose
// responses vary, a vary spec naming the selecting fields; the variant is
// then under a key derived from the spec and the request's values of those
// fields.

// how says how a stored response was found, for its Cache-Status.
type how uint8

const (
	howHit            how = iota // found in the cache
	howCollapsedURI              // another request loaded it just now (URL miss)
	howCollapsedVary             // another request loaded it just now (variant miss)
	howCollapsedStale            // another request refreshed it just now
)

// entry is what the lookup found for a request, and how far the request
// has got with it.
type entry struct {
	spec *Response // the URL's vary spec, if it has one
	key  string    // where rec is (or would be) stored: the URL key or the variant key
	rec  *Response // the stored record; nil when nothing is stored
	how  how
	// miss is why nothing was found (fwdURIMiss or fwdVaryMiss) when rec
	// is nil.
	miss fwd
	// refreshed counts the refreshes this request went through: a
	// response a refresh produced is not refreshed again by the request.
	refreshed int
}

// lookup finds what is stored for rq: the URL key, then the variant.
func (m *Middleware) lookup(ctx context.Context, rq *request) entry {
	e := entry{key: rq.u.key, miss: fwdURIMiss}
	e.rec, _ = m.get(ctx, rq.u.key)
	return m.lookupVariant(ctx, rq, e)
}

// lookupVariant continues a lookup that found a vary spec under the URL
// key: it looks up the variant the spec selects for rq.
func (m *Middleware) lookupVariant(ctx context.Context, rq *request, e entry) entry {
	if e.rec == nil || e.rec.kind != kindVary {
		return e
	}
	e.spec = e.rec
	e.key = variantKey(rq.u.key, e.spec, rq.r.Header)
	e.miss = fwdVaryMiss
	e.rec, _ = m.get(ctx, e.key)
	return e
}

// get reads key without loading it. A failing L2 is a miss (the load that
// follows degrades to the origin).
func (m *Middleware) get(ctx context.Context, key string) (*Response, bool) {
	v, ok, err := m.cache.Get(ctx, key)
	if err != nil || !ok || v == nil {
		return nil, false
	}
	return v, true
}
