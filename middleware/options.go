package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel/metric"
)

// Defaults of the options.
const (
	// DefaultMaxBodyBytes is the largest body stored (512 KiB). It keeps a
	// stored response, even base64-encoded by the default JSON codec, under
	// the L2 store's default 1 MiB value limit (remote.DefaultMaxValueBytes).
	DefaultMaxBodyBytes = 512 << 10
	// DefaultTagHeader is the response header whose space-separated values
	// are the response's tags (surrogate keys), for PurgeTag.
	DefaultTagHeader = "Surrogate-Key"
	// DefaultCacheName identifies the middleware in Cache-Status fields.
	DefaultCacheName = "tiercache"
	// DefaultMaxRefreshes bounds the background refreshes
	// (stale-while-revalidate) running at once on a node.
	DefaultMaxRefreshes = 64
	// DefaultHeuristicFraction is the share of the time since
	// Last-Modified that WithHeuristicFreshness users usually give a
	// response as its lifetime (RFC 9111, Section 4.2.2: 10 %).
	DefaultHeuristicFraction = 0.1
	// DefaultHeuristicMax is the usual cap on a heuristic lifetime (one
	// day), for WithHeuristicFreshness.
	DefaultHeuristicMax = 24 * time.Hour
	// DefaultHitForPass is how long a URL whose origin answered with a
	// response that may not be stored is remembered as such.
	DefaultHitForPass = 5 * time.Second
)

// DefaultKeyHeaders returns the request header fields that commonly change
// what a handler generates (links built from the forwarded host or scheme,
// method overrides, URL rewrites) without any Vary naming them: left
// unkeyed, one request carrying `X-Forwarded-Host: evil` could poison the
// entry served to everyone else. The middleware keys on them as if every
// response varied on them. An entry ending in "*" is a prefix: the default
// "X-Forwarded-*" keys every X-Forwarded- field (X-Forwarded-Host,
// -Proto, -Server, -Prefix...). Replace the list with WithKeyHeaders.
func DefaultKeyHeaders() []string {
	return []string{
		"Forwarded",
		"X-Forwarded-*",
		"X-Host",
		"X-Http-Method",
		"X-Http-Method-Override",
		"X-Method-Override",
		"X-Original-Url",
		"X-Rewrite-Url",
	}
}

type config struct {
	defaultTTL     time.Duration
	heuristicFrac  float64       // 0: no heuristic freshness
	heuristicMax   time.Duration // cap on a heuristic lifetime
	maxBody        int
	ignoredParams  []string
	keyHeaders     []string // canonical, sorted, unique; "Prefix-*" entries are prefixes
	targeted       string   // canonical cache-specific targeted field; "" for none
	surrogateToken string   // device token for Surrogate-Control; "" for none
	schemeHeader   string   // canonical trusted scheme field; "" for none
	hitForPass     time.Duration
	tagHeader      string // canonical
	cacheName      string
	clock          driver.Clock
	onError        func(ctx context.Context, err error)
	maxRefreshes   int
	ignoreReqCC    bool
	meterProvider  metric.MeterProvider // nil: the global one at New
}

func defaultConfig() config {
	c := config{
		maxBody:      DefaultMaxBodyBytes,
		tagHeader:    DefaultTagHeader,
		cacheName:    DefaultCacheName,
		clock:        driver.SystemClock,
		maxRefreshes: DefaultMaxRefreshes,
		hitForPass:   DefaultHitForPass,
	}
	c.keyHeaders = canonicalNames(DefaultKeyHeaders())
	return c
}

func canonicalNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = textproto.CanonicalMIMEHeaderKey(n)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Option configures a Middleware in New.
type Option func(*config) error

func invalidOption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
}

// WithDefaultTTL sets the freshness lifetime of responses that state none
// (no s-maxage, max-age or Expires), for the status codes RFC 9110 calls
// heuristically cacheable. Default zero: such responses are not stored.
// Negative is an error.
func WithDefaultTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalidOption("default TTL %v is negative", d)
		}
		c.defaultTTL = d
		return nil
	}
}

// WithHeuristicFreshness lets the cache give responses without explicit
// freshness (no s-maxage, max-age or Expires) a heuristic lifetime (RFC
// 9111, Section 4.2.2): fraction of the time between their Last-Modified
// and their Date, at most maxLifetime. It applies to the status codes RFC
// 9110 calls heuristically cacheable (200, 203, 204, 300, 301, 308, 404,
// 405, 410, 414, 501) and to responses marked public (any final status);
// never to a response without a valid Last-Modified before its Date, nor
// to one answering a request with Authorization or Cookie unless it is
// marked public (a logged-in page must not become everybody's); responses
// with Set-Cookie are never stored at all. The usual values are
// DefaultHeuristicFraction (10 %) and DefaultHeuristicMax (one day).
// Default: off. A fraction outside (0, 1] or a maxLifetime that is not
// positive is an error. With WithDefaultTTL too, the heuristic lifetime
// is used when there is a Last-Modified, the default TTL otherwise.
func WithHeuristicFreshness(fraction float64, maxLifetime time.Duration) Option {
	return func(c *config) error {
		if !(fraction > 0 && fraction <= 1) {
			return invalidOption("heuristic fraction %v is not in (0, 1]", fraction)
		}
		if maxLifetime <= 0 {
			return invalidOption("heuristic maximum lifetime %v is not positive", maxLifetime)
		}
		c.heuristicFrac, c.heuristicMax = fraction, maxLifetime
		return nil
	}
}

// WithMaxBodyBytes sets the largest body stored, in bytes. A larger response
// streams to its client as the handler writes it and is not stored. Default
// DefaultMaxBodyBytes (512 KiB); it must be positive. Raise the L2 store's
// value limit (remote.WithMaxValueBytes) with it.
func WithMaxBodyBytes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalidOption("max body bytes %d must be positive", n)
		}
		c.maxBody = n
		return nil
	}
}

// WithIgnoredQueryParams drops query parameters from cache keys and from the
// request the handler sees (so they cannot change a stored response): exact
// names, or prefixes ending in "*" such as "utm_*". Default: none. An empty
// name is an error. Later calls add to the list.
func WithIgnoredQueryParams(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if n == "" || n == "*" {
				return invalidOption("ignored query parameter %q", n)
			}
		}
		c.ignoredParams = append(c.ignoredParams, names...)
		return nil
	}
}

// WithKeyHeaders replaces DefaultKeyHeaders(): the request header fields
// the cache keys on as if every response listed them in Vary. A name ending
// in "*" is a prefix ("X-Forwarded-*" keys every field starting with
// X-Forwarded-). With none, only Vary selects variants. Invalid field
// names, and more than 32 entries, are an error. The key headers do not
// count against the limit of 32 names in a response's Vary.
func WithKeyHeaders(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if !validFieldName(n) || n == "*" || strings.Count(n, "*") > 1 || (strings.Contains(n, "*") && !strings.HasSuffix(n, "*")) {
				return invalidOption("key header %q is not a field name or a prefix ending in *", n)
			}
		}
		if len(names) > maxKeyHeaders {
			return invalidOption("%d key headers, at most %d", len(names), maxKeyHeaders)
		}
		c.keyHeaders = canonicalNames(names)
		return nil
	}
}

// WithTargetedHeader names a response header field that carries caching
// directives for this cache only, ahead of CDN-Cache-Control and
// Cache-Control (RFC 9213 targeted fields; for example
// "Tiercache-Cache-Control"). Default: none, so CDN-Cache-Control (always
// honoured) then Cache-Control decide. An invalid field name is an error.
func WithTargetedHeader(name string) Option {
	return func(c *config) error {
		if !validFieldName(name) {
			return invalidOption("targeted header %q is not a field name", name)
		}
		c.targeted = textproto.CanonicalMIMEHeaderKey(name)
		return nil
	}
}

// WithSurrogateControl makes the cache read Surrogate-Control (W3C Edge
// Architecture 1.0, as Fastly, Akamai, Varnish and Squid do) as the
// surrogate whose device token is token: the directives targeted at it
// ("max-age=60;token"), else the untargeted ones, decide after
// WithTargetedHeader's field and ahead of CDN-Cache-Control, Cache-Control
// and Expires whenever they give max-age
// (max-age=N+M: M seconds of stale-if-error) or no-store;
// stale-while-revalidate and stale-if-error are read there too, and
// no-store-remote does not apply (the cache runs next to the origin).
// Requests to the origin carry Surrogate-Capability: token="Surrogate/1.0",
// appended to what the request already carried, so the origin can target
// directives at it. The field is stored and forwarded as received, so a
// CDN in front reads it too. Default: off (Surrogate-Control is ignored).
// A token that is not an RFC 9110 token is an error.
func WithSurrogateControl(token string) Option {
	return func(c *config) error {
		if !validFieldName(token) {
			return invalidOption("surrogate device token %q is not a token", token)
		}
		c.surrogateToken = token
		return nil
	}
}

// WithSchemeHeader names a request header field, set by a trusted proxy in
// front of the service, that carries the scheme the client used ("http" or
// "https"; X-Forwarded-Proto, say). Default: none, and the scheme in cache
// keys is https when the connection to this server is TLS, else http; it is
// never taken from an absolute-form request target. With a scheme header,
// a request whose field holds anything else bypasses the cache. Use it
// only when every request passes through that proxy, which must overwrite
// the field. An invalid field name is an error.
func WithSchemeHeader(name string) Option {
	return func(c *config) error {
		if !validFieldName(name) {
			return invalidOption("scheme header %q is not a field name", name)
		}
		c.schemeHeader = textproto.CanonicalMIMEHeaderKey(name)
		return nil
	}
}

// WithHitForPass sets how long the middleware remembers that a URL's
// origin answered with a response that may not be stored (private,
// no-store, Set-Cookie, no freshness...): meanwhile requests for it go
// straight to the origin, concurrently, instead of queueing behind one
// another's load. Default DefaultHitForPass (5 s); zero turns it off;
// negative is an error.
func WithHitForPass(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalidOption("hit-for-pass duration %v is negative", d)
		}
		c.hitForPass = d
		return nil
	}
}

// WithTagHeader sets the response header carrying the response's tags
// (surrogate keys, space-separated) for PurgeTag. Default DefaultTagHeader
// ("Surrogate-Key"). The header is stored and sent like any other. An
// invalid field name is an error.
func WithTagHeader(name string) Option {
	return func(c *config) error {
		if !validFieldName(name) {
			return invalidOption("tag header %q is not a field name", name)
		}
		c.tagHeader = textproto.CanonicalMIMEHeaderKey(name)
		return nil
	}
}

// WithCacheName sets the cache's name in Cache-Status fields (RFC 9211).
// Default DefaultCacheName ("tiercache"). It must be a structured-field
// token: a letter or "*" followed by token characters, ":" or "/".
func WithCacheName(name string) Option {
	return func(c *config) error {
		if !sfToken(name) {
			return invalidOption("cache name %q is not a structured-field token", name)
		}
		c.cacheName = name
		return nil
	}
}

func sfToken(s string) bool {
	if s == "" || !(s[0] == '*' || ('a' <= s[0] && s[0] <= 'z') || ('A' <= s[0] && s[0] <= 'Z')) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isTokenChar(s[i]) && s[i] != ':' && s[i] != '/' {
			return false
		}
	}
	return true
}

// WithClock sets the clock freshness is computed with (a driver.Clock, the
// one clock type of every tiercache package). Default: driver.SystemClock.
// Nil is an error. (The tiered cache has its own, tiered.WithClock.)
func WithClock(clock driver.Clock) Option {
	return func(c *config) error {
		if clock == nil {
			return invalidOption("nil clock")
		}
		c.clock = clock
		return nil
	}
}

// WithErrorHandler sets the function told about errors the middleware
// handles itself: a failed invalidation after an unsafe request, a cache
// write that failed. It must be safe for concurrent use. Default: log at
// warning level on slog.Default(). Nil is an error.
func WithErrorHandler(h func(ctx context.Context, err error)) Option {
	return func(c *config) error {
		if h == nil {
			return invalidOption("nil error handler")
		}
		c.onError = h
		return nil
	}
}

// WithMaxRefreshes bounds the background refreshes (stale-while-revalidate)
// running at once on this node; a stale response found while the bound is
// reached is served without starting another. Default DefaultMaxRefreshes
// (64); it must be positive.
func WithMaxRefreshes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalidOption("max refreshes %d must be positive", n)
		}
		c.maxRefreshes = n
		return nil
	}
}

// WithRequestDirectives sets whether the request's Cache-Control directives
// are honoured: no-cache and max-age=0 (go to the origin and store the
// result), max-age, min-fresh, no-store and only-if-cached. Default true.
// With false they are ignored, as many CDNs do, so that clients (a browser's
// reload sends max-age=0 or no-cache) cannot make every request reach the
// origin.
func WithRequestDirectives(honour bool) Option {
	return func(c *config) error {
		c.ignoreReqCC = !honour
		return nil
	}
}

func logError(ctx context.Context, err error) {
	slog.Default().WarnContext(ctx, "tiercache middleware: handled error", "error", err)
}

// trimTags splits a tag header's values into tags.
func trimTags(lines []string) []string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.Fields(l)...)
	}
	return out
}
