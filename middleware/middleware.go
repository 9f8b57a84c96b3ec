package middleware

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/tiercache/tiercache/tiered"
)

// Middleware is a shared HTTP cache (RFC 9111) on a tiered.Cache. Create it
// with New, mount it with Handler, stop it with Close. It is safe for
// concurrent use; every replica of a service builds its own Middleware on
// its own tiered cache, all sharing one L2 and one invalidation bus.
type Middleware struct {
	cache *tiered.Cache[*Response]
	cfg   config

	interesting map[string]uint16 // request fields that matter, by canonical name
	status      statusValues
	ages        [ageTable][]string
	newGen      tiered.Loader[*Response]
	met         metrics

	// Background refreshes: owned goroutines, stopped by Close.
	mu         sync.Mutex // orders track against Close
	closed     atomic.Bool
	wg         sync.WaitGroup
	closing    context.Context
	cancel     context.CancelFunc
	refreshing sync.Map // successor key -> struct{}
	slots      chan struct{}
}

// ageTable is how many Age values are kept prebuilt.
const ageTable = 1024

// New returns a Middleware storing responses in cache, a tiered cache of its
// own (see "Recommended tiered options" in the package documentation). The
// cache stays the caller's: close it after the Middleware. Invalid options
// return an error matching ErrInvalidOption.
func New(cache *tiered.Cache[*Response], opts ...Option) (*Middleware, error) {
	if cache == nil {
		return nil, invalidOption("nil cache")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, invalidOption("nil option")
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.onError == nil {
		cfg.onError = logError
	}
	m := &Middleware{
		cache:       cache,
		cfg:         cfg,
		interesting: make(map[string]uint16),
		slots:       make(chan struct{}, cfg.maxRefreshes),
	}
	m.closing, m.cancel = context.WithCancel(context.Background())
	m.newGen = func(context.Context, string) (*Response, error) {
		return &Response{kind: kindGen, id: newID()}, nil
	}
	for name, f := range map[string]uint16{
		"Authorization":       rqAuth,
		"Cache-Control":       rqCacheControl,
		"If-None-Match":       rqConditional,
		"If-Modified-Since":   rqConditional,
		"Upgrade":             rqBypass,
		"Range":               rqBypass,
		"If-Range":            rqBypass,
		"If-Match":            rqBypass,
		"If-Unmodified-Since": rqBypass,
	} {
		m.interesting[name] |= f
	}
	for _, k := range cfg.keyHeaders {
		m.interesting[k] |= rqKeyHeader
	}
	m.status = newStatusValues(cfg.cacheName)
	for i := range m.ages {
		m.ages[i] = []string{strconv.Itoa(i)}
	}
	if err := m.met.register(cfg.meterProvider, cache.Name()); err != nil {
		m.cancel()
		return nil, err
	}
	return m, nil
}

// Cache returns the tiered cache the middleware stores in.
func (m *Middleware) Cache() *tiered.Cache[*Response] { return m.cache }

// Close stops the background refreshes and waits for them, and
// unregisters the metrics callback. Requests that arrive later pass through
// to the handler uncached. Close is idempotent and returns nil. Close the
// tiered cache after it.
func (m *Middleware) Close() error {
	m.mu.Lock()
	already := m.closed.Swap(true)
	m.mu.Unlock()
	if !already {
		m.cancel()
		m.met.unregister()
	}
	m.wg.Wait()
	return nil
}

// track registers a goroutine (or a loader call) with Close; it returns
// false once closed.
func (m *Middleware) track() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return false
	}
	m.wg.Add(1)
	return true
}

// Handler returns next wrapped by the cache. Its type fits routers that take
// func(http.Handler) http.Handler.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return &handler{m: m, next: next}
}

type handler struct {
	m    *Middleware
	next http.Handler
}

// Request fields that change what the middleware does.
const (
	rqAuth         uint16 = 1 << iota // Authorization
	rqCacheControl                    // Cache-Control
	rqConditional                     // If-None-Match or If-Modified-Since
	rqBypass                          // Upgrade, Range, If-Range, If-Match, If-Unmodified-Since
	rqKeyHeader                       // one of the key headers
)

// reqInfo is what the middleware read from a request.
type reqInfo struct {
	flags uint16
	head  bool
	cc    directives // parsed only with rqCacheControl
}

func (ri *reqInfo) has(f uint16) bool { return ri.flags&f != 0 }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := h.m
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions, http.MethodTrace, http.MethodConnect:
		h.pass(w, r, m.status.method)
		return
	default:
		h.serveUnsafe(w, r)
		return
	}
	if m.closed.Load() {
		h.pass(w, r, m.status.bypass)
		return
	}
	ri := reqInfo{head: r.Method == http.MethodHead}
	for k := range r.Header {
		ri.flags |= m.interesting[k]
	}
	if ri.has(rqBypass) {
		h.pass(w, r, m.status.bypass)
		return
	}
	if ri.has(rqCacheControl) && !m.cfg.ignoreReqCC {
		ri.cc = parseCacheControl(r.Header["Cache-Control"])
	} else {
		ri.cc = directives{maxAge: unset, sMaxAge: unset, minFresh: unset, staleWhileRevalidate: unset, staleIfError: unset}
	}
	u, ok := m.urlKey(r)
	if !ok {
		h.pass(w, r, m.status.bypass)
		return
	}
	h.serveCached(w, r, &ri, &u)
}

// pass runs the handler untouched, marking the response with a Cache-Status.
func (h *handler) pass(w http.ResponseWriter, r *http.Request, status cacheStatus) {
	h.m.met.request(status.out)
	w.Header()["Cache-Status"] = status.field
	h.next.ServeHTTP(w, r)
}

// serveUnsafe runs a request with an unsafe method. A 2xx or 3xx status
// invalidates the request's URL and the same-host URLs in its Location and
// Content-Location fields on every node (RFC 9111, Section 4.4), before the
// status goes out.
func (h *handler) serveUnsafe(w http.ResponseWriter, r *http.Request) {
	m := h.m
	m.met.request(m.status.method.out)
	w.Header()["Cache-Status"] = m.status.method.field
	iv := &invalidator{w: w, fn: func(status int) {
		if status < 200 || status >= 400 || m.closed.Load() {
			return
		}
		m.invalidate(r, w.Header())
	}}
	h.next.ServeHTTP(iv, r)
	iv.decide(http.StatusOK)
}

// invalidate deletes the URL keys of r and of the same-host URLs named by
// the Location and Content-Location fields of header.
func (m *Middleware) invalidate(r *http.Request, header http.Header) {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	scheme := schemeOf(r)
	var keys []string
	if u, ok := m.keyOf(scheme, host, r.URL.EscapedPath(), r.URL.RawQuery); ok {
		keys = append(keys, u.key)
	}
	base := &url.URL{Scheme: scheme, Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	for _, f := range [...]string{"Location", "Content-Location"} {
		v := header.Get(f)
		if v == "" {
			continue
		}
		loc, err := base.Parse(v)
		if err != nil || !sameHost(loc.Host, host, scheme) {
			continue
		}
		if u, ok := m.keyOf(scheme, loc.Host, loc.EscapedPath(), loc.RawQuery); ok && (len(keys) == 0 || u.key != keys[0]) {
			keys = append(keys, u.key)
		}
	}
	if len(keys) == 0 {
		return
	}
	ctx := context.WithoutCancel(r.Context())
	if err := m.cache.Delete(ctx, keys...); err != nil {
		m.cfg.onError(ctx, fmt.Errorf("middleware: invalidating %s %s: %w", r.Method, r.URL, err))
		return
	}
	m.met.invalidated(reasonUnsafe, len(keys))
}

func sameHost(a, b, scheme string) bool {
	return string(appendHost(nil, a, scheme)) == string(appendHost(nil, b, scheme))
}

// Purge removes the stored responses of an absolute URL (every variant, GET
// and HEAD) from every node. Query parameters are normalized as in keys.
func (m *Middleware) Purge(ctx context.Context, rawURL string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%w: %q is not absolute", ErrInvalidURL, rawURL)
	}
	k, ok := m.keyOf(u.Scheme, u.Host, u.EscapedPath(), u.RawQuery)
	if !ok {
		return fmt.Errorf("%w: %q cannot be keyed", ErrInvalidURL, rawURL)
	}
	if err := m.cache.Delete(ctx, k.key); err != nil {
		return err
	}
	m.met.invalidated(reasonPurge, 1)
	return nil
}

// PurgeTag makes every stored response tagged with one of tags (in the tag
// header, see WithTagHeader) a miss on every node. It bumps each tag's
// generation: nothing is scanned, so it costs the same however many
// responses carry the tag.
func (m *Middleware) PurgeTag(ctx context.Context, tags ...string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	for _, t := range tags {
		if !validTag(t) {
			return fmt.Errorf("middleware: invalid tag %q", t)
		}
	}
	if len(tags) == 0 {
		return nil
	}
	// The epoch first: a load that reads a tag's new generation must also
	// see the new epoch, which makes it not store what it loaded (it may
	// predate the purge).
	var errs []error
	if err := m.cache.Set(ctx, epochKey, &Response{kind: kindGen, id: newID()}); err != nil {
		errs = append(errs, err)
	}
	for _, t := range tags {
		if err := m.cache.Set(ctx, tagKey(t), &Response{kind: kindGen, id: newID()}); err != nil {
			errs = append(errs, fmt.Errorf("purging tag %q: %w", t, err))
			continue
		}
		m.met.invalidated(reasonPurgeTag, 1)
	}
	return errors.Join(errs...)
}

// generation returns the current generation under key (a tag or the epoch),
// creating one if there is none. ok is false when it cannot be read.
func (m *Middleware) generation(ctx context.Context, key string) (gen uint64, ok bool) {
	v, err := m.cache.GetOrLoad(ctx, key, m.newGen)
	if err != nil || v == nil || v.kind != kindGen {
		return 0, false
	}
	return v.id, true
}

// newID returns a random non-zero id.
func newID() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}
