package middleware

import (
	"context"
	"net/http"
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
	keyPrefixes []string          // key headers given as prefixes ("X-Forwarded-")
	targets     []targetField     // fields with directives for this cache, most specific first
	capability  string            // Surrogate-Capability member (WithSurrogateControl); "" for none
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
		interesting: interestingFields(cfg.keyHeaders),
		keyPrefixes: keyPrefixes(cfg.keyHeaders),
		slots:       make(chan struct{}, cfg.maxRefreshes),
	}
	if cfg.targeted != "" {
		m.targets = append(m.targets, targetField{name: cfg.targeted})
	}
	if cfg.surrogateToken != "" {
		m.targets = append(m.targets, targetField{name: "Surrogate-Control", surrogate: true})
		m.capability = surrogateCapability(cfg.surrogateToken)
	}
	m.targets = append(m.targets, targetField{name: "Cdn-Cache-Control"})
	m.closing, m.cancel = context.WithCancel(context.Background())
	m.newGen = func(context.Context, string) (*Response, error) {
		return &Response{kind: kindGen, id: newID()}, nil
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

// ServeHTTP is the whole request path, in one pass with a file per stage:
//
//	classify.go  what the request is: method, bypass rules, request
//	             directives, its URL key
//	lookup.go    what is stored for it: the URL key, then the variant the
//	             request's Vary fields select
//	decide.go    what to do with that: serve it fresh, serve it stale and
//	             refresh it, replace it through the origin, load a miss,
//	             or forward the request uncached
//	act.go       doing it: answering from the stored response (answer.go),
//	             coalesced loads (fill.go), forwarding
//	store.go     what a load stores and where; freshness.go decides whether
//	             a response may be stored and for how long
//
// An act may produce a new entry (the response another request's load
// stored, the response that replaced a stale one): the loop hands it back to
// decide, which never loops more than a few times.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := h.m
	var rq request
	switch m.classify(r, &rq) {
	case routeUnsafe:
		h.serveUnsafe(w, r)
		return
	case routeMethod:
		h.pass(w, r, m.status.method)
		return
	case routeBypass:
		h.pass(w, r, m.status.bypass)
		return
	case routeReload:
		h.loadDirect(w, &rq, fwdRequest)
		return
	}
	e := m.lookup(r.Context(), &rq)
	for {
		d := m.decide(r.Context(), &rq, &e)
		var done bool
		if e, done = h.act(w, &rq, e, d); done {
			return
		}
	}
}

// pass runs the handler untouched, marking the response with a Cache-Status.
func (h *handler) pass(w http.ResponseWriter, r *http.Request, status cacheStatus) {
	h.m.met.request(status.out)
	w.Header()["Cache-Status"] = status.field
	h.next.ServeHTTP(w, r)
}
