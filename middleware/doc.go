// Package middleware is a net/http response cache on tiered: a shared cache
// in the sense of RFC 9111 whose entries live in every replica's L1 and in
// the shared Redis L2, so that all replicas of a service make one origin
// call per URL (per Vary variant) and see purges and writes within
// milliseconds.
//
//	bus, _ := invalidation.New(rdb)
//	l1, _ := local.New[*middleware.Response](local.WithMaxCost(256 << 20), local.WithCost((*middleware.Response).Size))
//	l2, _ := remote.New(rdb, remote.WithCodec(middleware.Codec{}))
//	pages, _ := tiered.New[*middleware.Response]("http", l1, l2,
//		tiered.WithInvalidation(bus),
//		tiered.WithLocalTTL(10*time.Second),
//		tiered.WithRemoteTTL(time.Hour))
//	mw, err := middleware.New(pages, middleware.WithIgnoredQueryParams("utm_*"))
//	http.ListenAndServe(":8080", mw.Handler(mux))
//	// on shutdown: mw.Close(), then pages.Close(), then bus.Close()
//
// The middleware imports only tiered, the OpenTelemetry metrics API and the
// standard library; the stored record (Response) and its binary Codec live
// here.
//
// # What is stored
//
// A response to GET (or to a HEAD miss, which loads the GET response) is
// stored when all of these hold:
//
//   - it has explicit freshness (s-maxage, else max-age, else Expires
//     minus Date; a targeted field, below, comes first) and a final
//     status (200-599, less 206 and 304; with must-understand, only those
//     RFC 9110 defines, and must-understand then overrides no-store, RFC
//     9111 Section 5.2.2.3); or it has none and gets a heuristic lifetime:
//     with WithHeuristicFreshness, a fraction (DefaultHeuristicFraction,
//     10 %) of the time from Last-Modified to Date, capped
//     (DefaultHeuristicMax, a day), for the heuristically cacheable
//     statuses (200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501) or
//     a public response; else with WithDefaultTTL, that lifetime, for the
//     heuristically cacheable statuses; a heuristic lifetime never applies
//     when the request carried Cookie or Authorization, unless the
//     response says public; and that lifetime plus its stale windows
//     exceeds its age (Age by its first value, and Date, RFC 9111 Section
//     4.2.3);
//   - neither the request nor the response says no-store; the response
//     does not say private (its field-qualified form only drops the named
//     fields, as no-cache="..." does); it sets no cookie (Set-Cookie),
//     uses no trailers and does not say Vary: * (nor more than 32 Vary
//     names);
//   - a response that says no-cache is stored only with a validator (ETag
//     or Last-Modified), with no lifetime: every use is a conditional
//     request to the origin (RFC 9111 Section 5.2.2.4), and it is never
//     served stale;
//   - a request with Authorization gets it stored only if the response says
//     public, s-maxage or must-revalidate (RFC 9111 Section 3.5);
//   - the body fits WithMaxBodyBytes (512 KiB by default), and the handler
//     did not hijack or upgrade the connection. A flush is held back while
//     the response may be stored (httputil.ReverseProxy flushes every chunk
//     of a chunked body); an event stream, or a flushed response that may
//     not be stored, goes to its client as the handler writes it.
//
// Dates are parsed strictly (RFC 9110 Section 5.6.7; only the case of the
// day and month names and of GMT is free); an invalid Expires, or more
// than one, means already expired. CDN-Cache-Control (RFC 9213), and
// before it the WithTargetedHeader field if set, replaces Cache-Control
// and Expires when it holds a valid value: a structured-field dictionary
// whose known directives have values of their types (max-age="60" makes
// the field invalid, RFC 9213 Section 2.1). With WithSurrogateControl,
// Surrogate-Control (W3C Edge Architecture) comes between the two: the
// directives targeted at the cache's device token, else the untargeted
// ones, decide when they give max-age or no-store, and requests to the
// origin carry Surrogate-Capability with the token.
//
// Hop-by-hop fields (Connection and those it names, Keep-Alive,
// Transfer-Encoding, TE, Trailer, Upgrade, Proxy-*) are not stored; Date is
// added when missing, Content-Length is set, and Content-Type is sniffed
// when missing, as net/http would have.
//
// HEAD is answered from a stored GET response (without the body). Range
// requests are answered from a stored complete 200 (206, multipart
// byteranges, 416; If-Range); a Range miss loads the whole response.
// Requests with If-Match, If-Unmodified-Since or Upgrade, GET and HEAD
// requests with a body, and methods other than GET, HEAD and the unsafe
// ones, pass through untouched. A URL whose origin answered with a
// response that may not be stored is remembered for WithHitForPass (5 s):
// its requests go straight to the origin meanwhile.
//
// # The key
//
// A response is found by: scheme, host (lower-cased, default port
// dropped), escaped path, and the query with its parameters sorted by name
// (stably: repeated names keep their order) and the WithIgnoredQueryParams
// parameters dropped (they are also removed from the request the handler
// sees, so they cannot change a stored response). GET and HEAD share it.
//
// The values of the request fields a response's Vary names select among
// its variants: the URL key holds a small "vary spec" (the field names and
// a random id) and each variant is stored under the URL key plus the spec
// id plus the request's values of those fields, in a normal form
// (whitespace around list commas, empty members and line splits never
// matter; Accept-Encoding, Accept-Language, Accept-Charset and TE also
// ignore case and the order of members of different weight; see
// vary.go). The request fields in
// WithKeyHeaders (DefaultKeyHeaders: Forwarded, X-Forwarded-*, X-Host, method overrides, URL rewrites...; entries ending in "*"
// are prefixes) are keyed the same way as if every response named them in
// Vary, so a request carrying
// X-Forwarded-Host: evil gets its own variant instead of poisoning the one
// everybody else is served. Other request fields (Cookie, User-Agent...)
// are not keyed: a handler whose output depends on them must say Vary or
// private.
//
// # Answering
//
// Every answer carries a Cache-Status field (RFC 9211), named by
// WithCacheName ("tiercache"):
//
//	tiercache; hit                                   fresh stored response
//	tiercache; hit; detail=stale-while-revalidate    stale, refreshing in the background
//	tiercache; fwd=uri-miss; stored                  nothing stored for the URL: loaded and stored
//	tiercache; fwd=vary-miss; stored                 no variant for these Vary values
//	tiercache; fwd=stale; stored                     stale (or purged by tag): replaced
//	tiercache; fwd=request; stored                   request no-cache or max-age=0 (or too old for its max-age/min-fresh)
//	tiercache; fwd=...; stored; collapsed            another request's load answered this one
//	tiercache; fwd=stale; detail=stale-if-error      the origin failed; stale response served
//	tiercache; fwd=uri-miss                          (no "stored") forwarded, not stored
//	tiercache; fwd=request                           Authorization and a response that is not shared
//	tiercache; fwd=stale; fwd-status=304; stored     stale, confirmed by the origin (304): header updated
//	tiercache; fwd=uri-miss; detail=hit-for-pass     known not storable: straight to the origin
//	tiercache; fwd=bypass                            Upgrade, a GET with a body, ... or after Close
//	tiercache; fwd=method                            POST, PUT, DELETE, OPTIONS, ...
//	tiercache; detail=only-if-cached                 504 for only-if-cached without a response
//
// Stale responses are served only within the response's own
// stale-while-revalidate or stale-if-error window (RFC 5861), never with
// must-revalidate or proxy-revalidate. s-maxage does not turn them off
// (RFC 9111 reads s-maxage as implying proxy-revalidate; an origin that
// sends both s-maxage and stale-while-revalidate means the latter, and CDNs
// honour it).
//
// Stored responses carry Age. If-None-Match (weak comparison) or else
// If-Modified-Since (against Last-Modified, else Date) matching a stored
// 2xx response gives 304 Not Modified. The request that loads a response
// sends the origin no validators of its own (the cache needs the full
// response) and gets its 304 from the cache too. A stale response with an
// ETag or Last-Modified is refreshed with a conditional request carrying
// those validators; the origin's 304 updates the stored header (RFC 9111
// Section 4.3.4) and keeps the body ("fwd=stale; fwd-status=304").
//
// # Read path
//
// ServeHTTP is one pass, a file per stage:
//
//  1. classify.go: unsafe methods invalidate; OPTIONS, Upgrade, a body
//     and the like bypass; request no-cache or max-age=0 reloads (run the
//     origin, store the result); everything else is looked up.
//  2. lookup.go: the URL key (L1, then L2); a vary spec leads to the
//     variant its fields select.
//  3. decide.go: nothing stored: load it. A hit-for-pass record: forward.
//     A response: check Authorization, tag generations (PurgeTag), the
//     request's max-age and min-fresh, and freshness. Fresh: answer.
//     Stale within stale-while-revalidate: answer, and refresh it on a
//     background goroutine (one per response per node; Close stops them).
//     Otherwise replace it (validating it if it has validators).
//  4. act.go: answers come from answer.go and ranges.go. Loads go through
//     fill.go: tiered.Cache.GetOrLoad coalesces them on this node (one
//     flight) and across nodes (an L2 lease). The request whose loader runs
//     executes the origin handler on its own goroutine, answers its client,
//     and hands the stored result to the waiting requests. A result that
//     may not be stored is handed over as a hit-for-pass record (each
//     waiting request then goes to the origin itself, at once). A stale
//     response is replaced by loading its successor key, which every node
//     computes the same from the stale response's id, so one origin call
//     (conditional when it can be, validate.go) per cluster replaces it;
//     with stale-if-error, a 5xx from the origin is answered with the
//     stale response.
//  5. store.go: where a loaded response goes (URL key, variant, or in
//     place of the stale one through tiered's conditional write, so a
//     concurrent purge wins); freshness.go: whether it may be stored and
//     for how long.
//
// # Invalidation and purges
//
// A POST, PUT, PATCH, DELETE (any method but GET, HEAD, OPTIONS, TRACE)
// answered with 2xx or 3xx deletes the URL's entry, and those of the
// same-host URLs in Location and Content-Location, before the status goes
// out (RFC 9111 Section 4.4). Purge deletes a URL's entry. Deleting the URL
// key drops every variant (they hang off the spec's random id). Deletes go
// through tiered.Cache.Delete: L2 and, with a bus, every node's L1 within
// milliseconds, and any load of the key in flight stores nothing.
//
// PurgeTag works on the tags of the WithTagHeader field (Surrogate-Key,
// space-separated; a response with more than MaxTags tags is not stored,
// nor one with an invalid tag). Each tag has a generation stored in the cache (key
// "t:<tag>"); a stored response records its tags' generations; PurgeTag
// writes new generations (tiered.Cache.Set, broadcast on the bus), and a
// response whose recorded generations are not the current ones is a miss.
// Nothing is scanned and there is no tag index to keep consistent. A
// purge epoch, bumped by every PurgeTag, keeps a response loaded while a
// purge ran from being stored with the new generations.
//
// # Limits
//
// Consistency is bounded by tiered's: a node may serve a purged or
// invalidated response for the invalidation lag (normally well under a
// millisecond) or, if bus messages are lost, until its loss detection or
// LocalTTL. Refreshes replace entries with a conditional write, so a purge
// always wins over them; a no-cache reload (request no-cache or max-age=0)
// that finishes while a purge of the same URL runs can still store its
// (pre-purge) response. A hit-for-pass record sits under the URL key (or
// the variant key) of an unstorable response, so for WithHitForPass it
// sends every variant of that URL to the origin. A tag whose generation expires from L2 (RemoteTTL) gets a
// new one: its responses reload once. Successor keys hold a few bytes for
// RemoteTTL after each refresh. A hit writes the stored header's value
// slices into the response's header map without copying them: wrappers
// may Set, Add or Del fields, but must not modify a value slice in place.
//
// # Metrics
//
// The middleware reports OpenTelemetry metrics under the instrumentation
// scope ScopeName, to the provider given by WithMeterProvider (default: the
// global one at New). They are asynchronous counters over the middleware's
// own atomic counters (striped for the request outcomes), read by one
// callback at collection time: a hit still makes no OpenTelemetry call and
// no allocation. Close unregisters the callback. Every data point carries
// tiercache.cache, the name of the tiered cache the middleware stores in
// (the same value as on that cache's tiercache.* metrics).
//
//	tiercache.http.requests       {request}       by tiercache.http.cache_status
//	tiercache.http.stored         {response}      origin responses stored
//	tiercache.http.invalidations  {invalidation}  by tiercache.http.reason
//
// tiercache.http.cache_status says what the cache did with a request, from
// the Cache-Status field it sent:
//
//	hit          a fresh stored response (Cache-Status hit)
//	revalidated  a fresh stored response matched the request's validators: 304
//	stale        a stale response (stale-while-revalidate, stale-if-error)
//	collapsed    answered by another request's load (stored; collapsed)
//	miss         the origin ran and its response was stored (fwd=...; stored),
//	             or only-if-cached found nothing (504)
//	uncacheable  the origin ran and nothing was stored (fwd=... without stored:
//	             a response that may not be stored, a HEAD miss, a request
//	             with no-store or an Authorization the stored response does
//	             not allow)
//	bypass       not handled by the cache (fwd=bypass, fwd=method): unsafe
//	             methods, OPTIONS, Upgrade, a body..., after Close
//
// Background refreshes (stale-while-revalidate) are not requests; what they
// store counts in tiercache.http.stored. tiercache.http.invalidations counts
// successful invalidations by tiercache.http.reason: unsafe_method (one per
// URL an unsafe request invalidated: its own, Location, Content-Location),
// purge (one per Purge) and purge_tag (one per tag given to PurgeTag). The
// hit ratio is (hit + revalidated + stale + collapsed) over all requests
// but bypass. Stats returns the same counters without OpenTelemetry.
//
// # Recommended tiered options
//
//   - a tiered.Cache of its own for the middleware (it owns the key space);
//   - WithInvalidation(bus): purges and writes reach other nodes at once;
//   - WithLocalTTL of a few seconds: the L1 bound when bus messages are
//     lost (freshness is computed per request from the stored times, so an
//     L1 copy is never served as fresh past its freshness);
//   - WithRemoteTTL at least the longest freshness plus stale window you
//     want honoured (a longer-lived response is simply reloaded after it);
//     one hour is a good start;
//   - WithLoadTimeout at least the slowest handler (default 10 s): requests
//     waiting on a load give up after it and go to the origin themselves;
//   - remote.WithCodec(Codec{}) (compact; the default JSON codec works, at
//     4/3 the size), and remote.WithMaxValueBytes above WithMaxBodyBytes
//     plus headers;
//   - local.WithMaxCost(bytes) with local.WithCost((*Response).Size) to
//     bound L1 by memory.
//
// A Middleware is safe for concurrent use.
package middleware
