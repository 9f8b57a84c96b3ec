package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/tiered"
)

// maxBatch is the largest number of ids GET /products accepts.
const maxBatch = 100

// readCacheControl is the Cache-Control of the read endpoints' answers
// (200 and 404): any cache, the middleware included, may reuse them for
// 5 s. Writes invalidate the middleware's copies at once; the lifetime
// bounds what a client or CDN reuses after a write, and what a replica
// serves if it misses an invalidation.
const readCacheControl = "public, max-age=5"

// server is the products service: HTTP handlers reading the catalog through
// the cache, and writing the catalog then deleting the cache keys; the
// product endpoints behind the HTTP response cache.
type server struct {
	catalog *Catalog
	cache   *tiered.Cache[Product]
	bus     *invalidation.Bus // nil when the service runs without one
	redis   string            // Redis mode, shown in /stats
	log     *slog.Logger
	metrics http.Handler // GET /metrics; nil for none
	// mw caches the product endpoints' responses; nil for no HTTP cache.
	mw *middleware.Middleware
	// debug is the status page, GET /debug/tiercache; nil for none.
	debug http.Handler

	reads atomic.Uint64 // product read requests the handlers answered (each costs one query without a cache)
}

// handler returns the service's routes. The product endpoints, reads and
// writes, go through the HTTP cache (writes so that they invalidate the
// URLs they change); /stats and /metrics do not.
func (s *server) handler() http.Handler {
	cached := func(h http.HandlerFunc) http.Handler {
		if s.mw == nil {
			return h
		}
		return s.mw.Handler(h)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /products/{id}", cached(s.getProduct))
	mux.Handle("GET /products", cached(s.getProducts))
	mux.Handle("PUT /products/{id}", cached(s.putProduct))
	mux.Handle("DELETE /products/{id}", cached(s.deleteProduct))
	mux.HandleFunc("GET /stats", s.getStats)
	if s.debug != nil {
		mux.Handle("GET /debug/tiercache", s.debug)
	}
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}
	return mux
}

// productTag is the tag (Surrogate-Key) of every HTTP response showing
// product id, found or absent: PurgeTag(productTag(id)) drops them all.
func productTag(id int) string { return "product-" + strconv.Itoa(id) }

// cacheable lets the HTTP cache store the response about to be written,
// tagged with the products it shows. A response with more tags than the
// middleware keeps is marked no-store: a purge of a tag left out would
// miss it.
func cacheable(w http.ResponseWriter, ids ...int) {
	h := w.Header()
	if len(ids) > middleware.MaxTags {
		h.Set("Cache-Control", "no-store")
		return
	}
	tags := make([]string, len(ids))
	for i, id := range ids {
		tags[i] = productTag(id)
	}
	h.Set("Cache-Control", readCacheControl)
	h.Set("Surrogate-Key", strings.Join(tags, " "))
}

// purge drops the HTTP cache's responses that show product id, on every
// replica. The middleware invalidates the written URL itself; this reaches
// the others (batches, other Host names).
func (s *server) purge(ctx context.Context, id int) error {
	if s.mw == nil {
		return nil
	}
	return s.mw.PurgeTag(ctx, productTag(id))
}

// cacheKey is the cache key of a product id: its decimal form, so "007" and
// "7" share one entry.
func cacheKey(id int) string { return strconv.Itoa(id) }

// parseID parses a product id: a positive decimal integer.
func parseID(s string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("invalid product id %q: want a positive integer", s)
	}
	return id, nil
}

// loadProduct is the cache's loader: one catalog query for one key.
func (s *server) loadProduct(ctx context.Context, key string) (Product, error) {
	id, err := strconv.Atoi(key)
	if err != nil {
		return Product{}, fmt.Errorf("bad cache key %q: %w", key, err)
	}
	p, err := s.catalog.Find(ctx, id)
	if errors.Is(err, errNoRows) {
		return Product{}, tiered.ErrNotFound
	}
	return p, err
}

// loadProducts is the cache's batch loader: one catalog query for every
// key the cache could not answer. Absent ids are left out of the map.
func (s *server) loadProducts(ctx context.Context, keys []string) (map[string]Product, error) {
	ids := make([]int, len(keys))
	for i, k := range keys {
		id, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("bad cache key %q: %w", k, err)
		}
		ids[i] = id
	}
	rows, err := s.catalog.FindMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Product, len(rows))
	for id, p := range rows {
		out[cacheKey(id)] = p
	}
	return out, nil
}

// getProduct serves GET /products/{id}: the product, or 404. Both may be
// cached for 5 s.
func (s *server) getProduct(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.reads.Add(1)
	p, err := s.cache.GetOrLoad(r.Context(), cacheKey(id), s.loadProduct)
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		cacheable(w, id)
		writeError(w, http.StatusNotFound, fmt.Errorf("product %d not found", id))
	case err != nil:
		s.fail(w, r, err)
	default:
		cacheable(w, id)
		writeJSON(w, http.StatusOK, p)
	}
}

// batchResponse is the body of GET /products.
type batchResponse struct {
	Products []Product `json:"products"` // in the order asked, found ones only
	Missing  []int     `json:"missing"`  // ids with no product
}

// getProducts serves GET /products?ids=1,2,3 with one GetOrLoadMany call:
// ids no tier holds are loaded with a single catalog query. The answer may
// be cached for 5 s, tagged with every id asked for.
func (s *server) getProducts(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("ids")
	if raw == "" {
		writeError(w, http.StatusBadRequest, errors.New("missing query parameter ids, e.g. /products?ids=1,2,3"))
		return
	}
	var ids []int
	for f := range strings.SplitSeq(raw, ",") {
		id, err := parseID(strings.TrimSpace(f))
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) > maxBatch {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%d ids, at most %d", len(ids), maxBatch))
		return
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = cacheKey(id)
	}
	s.reads.Add(1)
	found, err := s.cache.GetOrLoadMany(r.Context(), keys, s.loadProducts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := batchResponse{Products: []Product{}, Missing: []int{}}
	for i, id := range ids {
		if p, ok := found[keys[i]]; ok {
			resp.Products = append(resp.Products, p)
		} else {
			resp.Missing = append(resp.Missing, id)
		}
	}
	cacheable(w, ids...)
	writeJSON(w, http.StatusOK, resp)
}

// productInput is the body of PUT /products/{id}.
type productInput struct {
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// putProduct serves PUT /products/{id}: it writes the catalog first, then
// deletes the cache key and purges the HTTP responses showing the product,
// so the next read on any node loads the new row. It answers 201 for a new
// product and 200 for a replaced one (and the middleware, seeing a 2xx,
// invalidates the URL). The invalidations run even if the client goes
// away once the catalog changed.
func (s *server) putProduct(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var in productInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("invalid JSON body: %w", err))
		return
	}
	if strings.TrimSpace(in.Name) == "" || in.PriceCents < 0 {
		writeError(w, http.StatusBadRequest, errors.New(`want {"name": non-empty, "price_cents": >= 0}`))
		return
	}
	p := Product{ID: id, Name: in.Name, PriceCents: in.PriceCents}
	created, err := s.catalog.Put(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := context.WithoutCancel(r.Context())
	if err := s.cache.Delete(ctx, cacheKey(id)); err != nil {
		s.fail(w, r, fmt.Errorf("product %d saved, but the cache still holds the old one (retry the request): %w", id, err))
		return
	}
	if err := s.purge(ctx, id); err != nil {
		s.fail(w, r, fmt.Errorf("product %d saved, but cached responses may still show the old one (retry the request): %w", id, err))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, p)
}

// deleteProduct serves DELETE /products/{id}: 204, or 404 for an unknown
// id. The cache key is deleted and the HTTP responses showing the product
// purged after the catalog row.
func (s *server) deleteProduct(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	err = s.catalog.Delete(r.Context(), id)
	if err != nil && !errors.Is(err, errNoRows) {
		s.fail(w, r, err)
		return
	}
	// Delete the key even for an absent row: it is cheap and idempotent,
	// and repairs a cache that missed an earlier delete.
	ctx := context.WithoutCancel(r.Context())
	if cerr := s.cache.Delete(ctx, cacheKey(id)); cerr != nil {
		s.fail(w, r, fmt.Errorf("product %d deleted, but the cache still holds it (retry the request): %w", id, cerr))
		return
	}
	if cerr := s.purge(ctx, id); cerr != nil {
		s.fail(w, r, fmt.Errorf("product %d deleted, but cached responses may still show it (retry the request): %w", id, cerr))
		return
	}
	if errors.Is(err, errNoRows) {
		writeError(w, http.StatusNotFound, fmt.Errorf("product %d not found", id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Stats is the body of GET /stats and the content of the stats log line.
type Stats struct {
	Redis string     `json:"redis"` // "embedded", "standalone" or "cluster"
	Cache CacheStats `json:"cache"`
	// HTTP counts what the HTTP response cache did (zero without one).
	HTTP HTTPStats `json:"http"`
	DB   DBStats   `json:"db"`
	// Reads counts product read requests the handlers answered (GET
	// /products/{id} and GET /products), past the HTTP cache: without a
	// cache, each would be one query. Requests the HTTP cache answered are
	// not among them (see HTTP).
	Reads uint64 `json:"reads"`
	// QueriesSaved is Reads minus DB.Queries: reads answered without a
	// query.
	QueriesSaved uint64    `json:"queries_saved"`
	Bus          *BusStats `json:"bus,omitempty"`
}

// CacheStats is the part of tiered.Stats the service shows.
type CacheStats struct {
	L1Hits        uint64 `json:"l1_hits"`
	L1NotFound    uint64 `json:"l1_not_found"`
	L2Hits        uint64 `json:"l2_hits"`
	L2NotFound    uint64 `json:"l2_not_found"`
	L2Misses      uint64 `json:"l2_misses"`
	L2Errors      uint64 `json:"l2_errors"`
	Loads         uint64 `json:"loads"`
	LeaseWaits    uint64 `json:"lease_waits"`
	FillsRejected uint64 `json:"fills_rejected"`
	HandledErrors uint64 `json:"handled_errors"`
}

// HTTPStats is the middleware's counters (middleware.Stats): what it did
// with each request to the product endpoints.
type HTTPStats struct {
	Hits        uint64 `json:"hits"`        // answered from a fresh stored response
	Revalidated uint64 `json:"revalidated"` // 304 from a stored response
	Stale       uint64 `json:"stale"`       // stale response served
	Collapsed   uint64 `json:"collapsed"`   // answered by a concurrent request's load
	Misses      uint64 `json:"misses"`      // handler ran, response stored
	Uncacheable uint64 `json:"uncacheable"` // handler ran, nothing stored (errors, HEAD misses, no-store)
	Bypassed    uint64 `json:"bypassed"`    // not handled by the cache: PUT, DELETE, Range...
	Stored      uint64 `json:"stored"`      // responses stored
	// InvalidatedURLs counts URLs invalidated by successful PUTs and
	// DELETEs; PurgedTags the tags their handlers purged.
	InvalidatedURLs uint64 `json:"invalidated_urls"`
	PurgedTags      uint64 `json:"purged_tags"`
}

// DBStats counts the catalog's queries.
type DBStats struct {
	Queries    uint64 `json:"queries"`
	Writes     uint64 `json:"writes"`
	QueryDelay string `json:"query_delay"`
}

// BusStats is the part of invalidation.Stats the service shows.
type BusStats struct {
	MessagesSent     uint64 `json:"messages_sent"`
	MessagesReceived uint64 `json:"messages_received"`
	KeysInvalidated  uint64 `json:"keys_invalidated"`
	Flushes          uint64 `json:"flushes"`
}

// stats returns the service's counters.
func (s *server) stats() Stats {
	cs := s.cache.Stats()
	// Read the catalog before the reads counter: a read counts its request
	// before its query, so this order keeps QueriesSaved from going
	// negative under load.
	queries := s.catalog.Queries()
	reads := s.reads.Load()
	st := Stats{
		Redis: s.redis,
		Cache: CacheStats{
			L1Hits:        cs.L1Hits,
			L1NotFound:    cs.L1NotFound,
			L2Hits:        cs.L2Hits,
			L2NotFound:    cs.L2NotFound,
			L2Misses:      cs.L2Misses,
			L2Errors:      cs.L2Errors,
			Loads:         cs.Loads,
			LeaseWaits:    cs.LeaseWaits,
			FillsRejected: cs.FillsRejected,
			HandledErrors: cs.HandledErrors,
		},
		DB: DBStats{
			Queries:    queries,
			Writes:     s.catalog.Writes(),
			QueryDelay: s.catalog.delay.String(),
		},
		Reads:        reads,
		QueriesSaved: reads - min(reads, queries),
	}
	if s.mw != nil {
		hs := s.mw.Stats()
		st.HTTP = HTTPStats{
			Hits:            hs.Hits,
			Revalidated:     hs.Revalidated,
			Stale:           hs.Stale,
			Collapsed:       hs.Collapsed,
			Misses:          hs.Misses,
			Uncacheable:     hs.Uncacheable,
			Bypassed:        hs.Bypassed,
			Stored:          hs.Stored,
			InvalidatedURLs: hs.InvalidatedURLs,
			PurgedTags:      hs.PurgedTags,
		}
	}
	if s.bus != nil {
		bs := s.bus.Stats()
		f := bs.Flushes
		st.Bus = &BusStats{
			MessagesSent:     bs.MessagesSent,
			MessagesReceived: bs.MessagesReceived,
			KeysInvalidated:  bs.KeysInvalidated,
			Flushes:          f.Gap + f.Resubscribe + f.Silence + f.Remote,
		}
	}
	return st
}

// getStats serves GET /stats.
func (s *server) getStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.stats())
}

// logStats writes st as one log line.
func logStats(log *slog.Logger, msg string, st Stats) {
	c := st.Cache
	log.Info(msg,
		"http_hits", st.HTTP.Hits, "http_misses", st.HTTP.Misses,
		"l1_hits", c.L1Hits, "l2_hits", c.L2Hits, "loads", c.Loads,
		"db_queries", st.DB.Queries, "db_writes", st.DB.Writes,
		"reads", st.Reads, "queries_saved", st.QueriesSaved,
		"l2_errors", c.L2Errors, "handled_errors", c.HandledErrors)
}

// fail answers 503 when the cache is closed (shutting down) and 500
// otherwise, and logs the error.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, tiered.ErrClosed) || errors.Is(err, middleware.ErrClosed) {
		status = http.StatusServiceUnavailable
	}
	s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, status, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
