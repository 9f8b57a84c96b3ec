package middleware

import (
	"net/http"
	"strings"
)

// Stage 1: classify the request. What the middleware needs from a request
// is read once here: its method, the header fields that change what the
// cache does, the request's Cache-Control directives and its URL key.

// route is what classify decided about a request.
type route uint8

const (
	routeCache  route = iota // look it up (the usual case)
	routeReload              // request no-cache or max-age=0: load it, skipping the lookup
	routeUnsafe              // POST, PUT, ...: run it, invalidate on success
	routeMethod              // OPTIONS, TRACE, CONNECT: not cached
	routeBypass              // Upgrade, If-Match, a body, an unkeyable URL, after Close
)

// Request fields that change what the middleware does.
const (
	rqAuth         uint16 = 1 << iota // Authorization
	rqCacheControl                    // Cache-Control
	rqConditional                     // If-None-Match or If-Modified-Since
	rqBypass                          // Upgrade, If-Match, If-Unmodified-Since
	rqKeyHeader                       // one of the key headers
	rqCookie                          // Cookie
	rqRange                           // Range or If-Range
)

// interestingFields returns the request fields classify looks for, with
// their flags.
func interestingFields(keyHeaders []string) map[string]uint16 {
	m := make(map[string]uint16)
	for name, f := range map[string]uint16{
		"Authorization":       rqAuth,
		"Cookie":              rqCookie,
		"Cache-Control":       rqCacheControl,
		"If-None-Match":       rqConditional,
		"If-Modified-Since":   rqConditional,
		"Upgrade":             rqBypass,
		"Range":               rqRange,
		"If-Range":            rqRange,
		"If-Match":            rqBypass,
		"If-Unmodified-Since": rqBypass,
	} {
		m[name] |= f
	}
	for _, k := range keyHeaders {
		if !strings.HasSuffix(k, "*") {
			m[k] |= rqKeyHeader
		}
	}
	return m
}

// keyPrefixes returns the key headers given as prefixes, without the "*".
func keyPrefixes(keyHeaders []string) []string {
	var out []string
	for _, k := range keyHeaders {
		if p, ok := strings.CutSuffix(k, "*"); ok {
			out = append(out, p)
		}
	}
	return out
}

// request is what the middleware read from a GET or HEAD request.
type request struct {
	r     *http.Request
	flags uint16
	head  bool
	cc    directives // parsed only with rqCacheControl
	u     requestURL
}

func (rq *request) has(f uint16) bool { return rq.flags&f != 0 }

// noDirectives is the directives of a request without Cache-Control.
var noDirectives = directives{maxAge: unset, sMaxAge: unset, minFresh: unset, staleWhileRevalidate: unset, staleIfError: unset}

// classify routes r, filling rq for the routes that use it (routeCache,
// routeReload).
func (m *Middleware) classify(r *http.Request, rq *request) route {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return routeMethod
	default:
		return routeUnsafe
	}
	if m.closed.Load() {
		return routeBypass
	}
	rq.r = r
	rq.head = r.Method == http.MethodHead
	for k := range r.Header {
		rq.flags |= m.interesting[k]
		for _, p := range m.keyPrefixes {
			if strings.HasPrefix(k, p) {
				rq.flags |= rqKeyHeader
			}
		}
	}
	if rq.has(rqBypass) || hasBody(r) {
		// A GET or HEAD with a body: its response may depend on the body,
		// which is not keyed (RFC 9110, Section 9.3.1).
		return routeBypass
	}
	if rq.has(rqCacheControl) && !m.cfg.ignoreReqCC {
		rq.cc = parseCacheControl(r.Header["Cache-Control"])
	} else {
		rq.cc = noDirectives
	}
	u, ok := m.urlKey(r)
	if !ok {
		return routeBypass
	}
	rq.u = u
	if rq.cc.noCache || rq.cc.maxAge == 0 {
		return routeReload
	}
	return routeCache
}

// hasBody reports whether r carries a body (or may: a chunked one).
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}
