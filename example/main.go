// Command example is a small products service on tiercache: an in-memory
// catalog with a simulated query delay, read through a two-tier cache
// (ristretto L1 in the process, Redis L2 shared by every replica), with
// invalidation over Redis pub/sub after writes, and the JSON responses of
// the read endpoints cached by the HTTP middleware (package middleware) on
// a second two-tier cache.
//
// From the repository root:
//
//	go run ./example                  # embedded Redis, listens on :8080
//	TIERCACHE_REDIS_ADDR=127.0.0.1:6379 go run ./example
//	TIERCACHE_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001 go run ./example -addr :8081
//
// Endpoints:
//
//	GET    /products/{id}       one product (404 if absent), via GetOrLoad; HTTP-cached
//	GET    /products?ids=1,2,3  several products, via GetOrLoadMany; HTTP-cached
//	PUT    /products/{id}       create or replace {"name": ..., "price_cents": ...}, then Delete the key and purge the product's HTTP responses
//	DELETE /products/{id}       delete the product, then Delete the key and purge the product's HTTP responses
//	GET    /stats               cache tier hits, HTTP cache counters, DB queries and queries saved
//	GET    /metrics             OpenTelemetry metrics in the Prometheus text format
//	GET    /debug/tiercache     live status page of both caches and the bus (package debugpage; ?format=json for JSON)
//
// HTTP cache: the four product endpoints run behind middleware.Middleware,
// whose responses live in a second tiered cache (named after the products
// cache plus "-http": L1 bounded to 64 MiB by (*middleware.Response).Size,
// L2 in the same Redis with middleware.Codec, invalidations on the same
// bus). The read handlers answer with "Cache-Control: public, max-age=5"
// and a "Surrogate-Key" naming every product the response shows
// (product-42; a batch names each id it asked for, found or not). A second
// GET of the same URL within 5 s is answered from the cache, on any
// replica, with "Cache-Status: tiercache; hit" and Age; its handler does
// not run. PUT and DELETE go through the middleware, which invalidates
// their URL on every replica when they succeed; the handlers also call
// PurgeTag("product-<id>"), which drops every other cached response showing
// the product (the batches, the same URL under another Host). A client
// sending "Cache-Control: no-cache" (or max-age=0) skips the stored
// response: its request runs the handler and refreshes what is stored. Any
// client or CDN may still reuse a response for its 5 s. /stats and
// /metrics are not cached. The middleware's metrics (tiercache_http_*) are
// on /metrics and its counters in /stats under "http".
//
// Configuration (a flag overrides its environment variable):
//
//	-addr            ADDR                     listen address (default :8080)
//	-query-delay     QUERY_DELAY              simulated duration of a query (default 20ms)
//	-products        PRODUCTS                 number of products in the catalog (default 500)
//	-stats-interval  STATS_INTERVAL           period of the stats log line, 0 for none (default 10s)
//	-cache-name      CACHE_NAME               namespace of the cache in Redis (default products; the HTTP cache's: products-http)
//	-trace-stdout    TRACE_STDOUT=1           print spans to stdout, pretty JSON (default off)
//	                 OTEL_EXPORTER_OTLP_ENDPOINT         export spans over OTLP/HTTP, e.g. http://localhost:4318
//	                 OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  the same, full URL of the traces path (wins)
//	                 TIERCACHE_REDIS_ADDR     standalone Redis host:port
//	                 TIERCACHE_CLUSTER_ADDRS  comma-separated Redis Cluster nodes (wins over TIERCACHE_REDIS_ADDR)
//
// Telemetry: the cache's metrics (tiercache_*), the HTTP server's
// (http_server_*) and the Go runtime's are served on GET /metrics, with the
// resource (service.name="tiercache-example", or OTEL_SERVICE_NAME) on
// target_info. Every request gets a server span, the parent of the cache's
// spans (tiercache.get, tiercache.l2.*, the loader), and an incoming
// traceparent header is continued. Spans go nowhere unless -trace-stdout
// or an OTLP endpoint asks for them; the other OTEL_* variables of the SDK
// and the OTLP exporter (headers, sampler, resource attributes) apply.
// The providers are flushed at shutdown.
//
// With neither Redis variable set, the service starts an embedded Redis
// (miniredis) in the process, so it runs anywhere with no setup.
//
// The catalog is an in-memory table that every process builds afresh, the
// same each time: it stands for a database only within one process. Against
// a Redis that outlives the service, a row changed in an earlier run may
// still be served from L2 after a restart until its entry expires (10 min);
// pick another -cache-name to start clean. Replicas in separate processes
// do not share writes to their catalogs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/debugpage"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// httpCacheBytes bounds the memory the HTTP cache's L1 holds, as measured
// by (*middleware.Response).Size.
const httpCacheBytes = 64 << 20

// Config configures the service. parseConfig fills it from flags and the
// environment; tests fill it directly.
type Config struct {
	// Addr is the HTTP listen address. Default ":8080".
	Addr string
	// RedisAddr is a standalone Redis host:port (TIERCACHE_REDIS_ADDR).
	RedisAddr string
	// ClusterAddrs are Redis Cluster nodes (TIERCACHE_CLUSTER_ADDRS). They
	// win over RedisAddr. With neither, an embedded Redis is started.
	ClusterAddrs []string
	// QueryDelay is the simulated duration of each catalog query. Default
	// 20ms.
	QueryDelay time.Duration
	// Products is the number of products in the catalog. Default 500.
	Products int
	// StatsInterval is the period of the stats log line; zero logs only at
	// shutdown. Default 10s. A line is skipped when nothing changed.
	StatsInterval time.Duration
	// CacheName is the cache's namespace in Redis and on the bus. Default
	// "products". The HTTP response cache uses CacheName+"-http". Replicas
	// of one service share it; tests on a shared Redis give each run its
	// own.
	CacheName string
	// Logger receives the service's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Catalog is the table the service serves. Nil means a new catalog of
	// Products rows with QueryDelay; replicas in one process (tests) share
	// one to stand for a shared database.
	Catalog *Catalog

	// TraceStdout prints spans to TraceOutput as they end (-trace-stdout,
	// TRACE_STDOUT). Default off: every request that leaves L1 makes
	// several spans.
	TraceStdout bool
	// TraceOutput is where TraceStdout prints. Nil means os.Stdout.
	TraceOutput io.Writer
	// OTLPTraces exports spans over OTLP/HTTP, to the endpoint of the
	// standard variables OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT, which the exporter reads with the rest
	// of its OTEL_EXPORTER_OTLP_* configuration. parseConfig sets it when
	// either endpoint variable is set.
	OTLPTraces bool
	// SpanExporter, if not nil, also receives every span, synchronously as
	// it ends (tests).
	SpanExporter sdktrace.SpanExporter
	// GlobalTelemetry installs the service's meter and tracer providers and
	// propagator as the OpenTelemetry globals, for code that uses them by
	// default. main sets it; tests leave it off, since several services
	// share a test process. The cache and the HTTP handler get the
	// providers explicitly either way.
	GlobalTelemetry bool
}

// parseConfig reads the configuration from args (without the program name)
// and getenv. Environment variables set the defaults of the flags.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := Config{
		Addr:          ":8080",
		QueryDelay:    20 * time.Millisecond,
		Products:      500,
		StatsInterval: 10 * time.Second,
		CacheName:     "products",
		RedisAddr:     strings.TrimSpace(getenv("TIERCACHE_REDIS_ADDR")),
	}
	for a := range strings.SplitSeq(getenv("TIERCACHE_CLUSTER_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.ClusterAddrs = append(cfg.ClusterAddrs, a)
		}
	}
	if v := getenv("ADDR"); v != "" {
		cfg.Addr = v
	}
	if v := getenv("CACHE_NAME"); v != "" {
		cfg.CacheName = v
	}
	var err error
	if v := getenv("QUERY_DELAY"); v != "" {
		if cfg.QueryDelay, err = time.ParseDuration(v); err != nil {
			return cfg, fmt.Errorf("QUERY_DELAY: %w", err)
		}
	}
	if v := getenv("PRODUCTS"); v != "" {
		if cfg.Products, err = strconv.Atoi(v); err != nil {
			return cfg, fmt.Errorf("PRODUCTS: %w", err)
		}
	}
	if v := getenv("TRACE_STDOUT"); v != "" {
		if cfg.TraceStdout, err = strconv.ParseBool(v); err != nil {
			return cfg, fmt.Errorf("TRACE_STDOUT: %w", err)
		}
	}
	cfg.OTLPTraces = otlpEndpoint(getenv) != ""
	if v := getenv("STATS_INTERVAL"); v != "" {
		if cfg.StatsInterval, err = time.ParseDuration(v); err != nil {
			return cfg, fmt.Errorf("STATS_INTERVAL: %w", err)
		}
	}

	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "HTTP listen address (env ADDR)")
	fs.DurationVar(&cfg.QueryDelay, "query-delay", cfg.QueryDelay, "simulated duration of a catalog query (env QUERY_DELAY)")
	fs.IntVar(&cfg.Products, "products", cfg.Products, "number of products in the catalog (env PRODUCTS)")
	fs.StringVar(&cfg.CacheName, "cache-name", cfg.CacheName, "namespace of the cache in Redis and on the bus (env CACHE_NAME)")
	fs.DurationVar(&cfg.StatsInterval, "stats-interval", cfg.StatsInterval, "period of the stats log line, 0 for shutdown only (env STATS_INTERVAL)")
	fs.BoolVar(&cfg.TraceStdout, "trace-stdout", cfg.TraceStdout, "print spans to stdout as pretty JSON (env TRACE_STDOUT=1)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./example [flags]\n\n"+
			"Redis: TIERCACHE_CLUSTER_ADDRS (comma-separated Cluster nodes) or TIERCACHE_REDIS_ADDR (host:port);\n"+
			"with neither, an embedded in-process Redis is started.\n"+
			"Traces: OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) exports spans over OTLP/HTTP.\n"+
			"Metrics: GET /metrics (Prometheus text format).\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case cfg.CacheName == "":
		return cfg, errors.New("empty cache name")
	case cfg.Products < 0:
		return cfg, fmt.Errorf("products %d is negative", cfg.Products)
	case cfg.QueryDelay < 0:
		return cfg, fmt.Errorf("query delay %v is negative", cfg.QueryDelay)
	case cfg.StatsInterval < 0:
		return cfg, fmt.Errorf("stats interval %v is negative", cfg.StatsInterval)
	}
	return cfg, nil
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(2)
	}
	cfg.GlobalTelemetry = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, nil); err != nil {
		slog.Error("example: stopped", "error", err)
		os.Exit(1)
	}
}

// run starts the service and serves until ctx ends, then shuts down
// gracefully: it stops accepting requests, lets those in progress finish
// (up to 10 s), closes the cache, the bus and Redis, and flushes the
// telemetry (up to 5 s). Once it listens it
// sends the listen address on ready (if not nil; ready must have room for
// it or a receiver). It returns nil after a shutdown caused by ctx.
func run(ctx context.Context, cfg Config, ready chan<- string) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.CacheName == "" {
		cfg.CacheName = "products"
	}

	// Telemetry first, so that its shutdown (deferred) runs last and flushes
	// the spans of everything else's shutdown.
	tel, err := newTelemetry(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer shutdownTelemetry(ctx, tel, log)
	if cfg.GlobalTelemetry {
		tel.installGlobal(log)
	}

	rc, err := connectRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer rc.Close()

	// One Group per process: the invalidation bus every cache shares.
	// Standalone Redis (and the embedded one) uses PUBLISH/SUBSCRIBE, a
	// Cluster sharded pub/sub. Closing the Group closes its caches, then
	// the bus; deferred calls run in reverse, so before the Redis client.
	group, err := tiercache.NewGroup(rc.client,
		tiercache.WithBusOptions(
			invalidation.WithLogger(log),
			invalidation.WithMeterProvider(tel.meterProvider)),
		tiercache.WithDefaults(
			tiered.WithMeterProvider(tel.meterProvider),
			tiered.WithTracerProvider(tel.tracerProvider),
			tiered.WithLogger(log)))
	if err != nil {
		return fmt.Errorf("starting the cache group: %w", err)
	}
	defer group.Close()

	cache, err := tiercache.New[Product](group, cfg.CacheName,
		tiercache.WithLocal(local.WithMaxEntries(10_000)),
		tiercache.WithTiered(
			tiered.WithLocalTTL(10*time.Second),
			tiered.WithRemoteTTL(10*time.Minute)))
	if err != nil {
		return err
	}

	mw, err := newHTTPCache(cfg, group, tel, log)
	if err != nil {
		return err
	}
	// The middleware before its cache, which the Group closes.
	defer mw.Close()

	// The live status page of the caches and the bus, at /debug/tiercache.
	page, err := debugpage.New(debugpage.WithTitle("products service"))
	if err != nil {
		return err
	}
	defer page.Close()
	page.AddGroup("bus", group)

	catalog := cfg.Catalog
	if catalog == nil {
		catalog = NewCatalog(cfg.Products, cfg.QueryDelay)
	}
	srv := &server{
		catalog: catalog,
		cache:   cache,
		bus:     group.Bus(),
		redis:   rc.mode,
		log:     log,
		metrics: tel.metrics,
		mw:      mw,
		debug:   page,
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           tel.instrument(srv.handler()),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("products service listening",
		"addr", ln.Addr().String(), "products", catalog.Len(), "query_delay", catalog.delay,
		"redis", rc.mode, "try", "curl http://"+dialable(ln.Addr())+"/products/42",
		"metrics", "http://"+dialable(ln.Addr())+"/metrics",
		"status", "http://"+dialable(ln.Addr())+"/debug/tiercache")

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- hs.Serve(ln) })
	statsCtx, stopStats := context.WithCancel(ctx)
	wg.Go(func() { logStatsEvery(statsCtx, log, cfg.StatsInterval, srv.stats) })
	defer func() {
		stopStats()
		wg.Wait()
		logStats(log, "final stats", srv.stats())
	}()
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serving HTTP: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down HTTP: %w", err)
	}
	return nil
}

// newHTTPCache builds the HTTP response cache: a cache of its own in the
// Group (the middleware owns its key space) with the options the
// middleware's documentation recommends, and the middleware on it. The
// caller closes the middleware; the Group closes its cache.
func newHTTPCache(cfg Config, group *tiercache.Group, tel *telemetry, log *slog.Logger) (*middleware.Middleware, error) {
	pages, err := tiercache.New[*middleware.Response](group, cfg.CacheName+"-http",
		tiercache.WithLocal(
			local.WithMaxCost(httpCacheBytes),
			local.WithCost((*middleware.Response).Size)),
		// The compact codec; the default value limit (1 MiB) is above the
		// middleware's body cap (512 KiB) plus headers.
		tiercache.WithRemote(remote.WithCodec(middleware.Codec{})),
		tiercache.WithTiered(
			// The L1 bound if bus messages are lost; freshness itself comes
			// from the responses' Cache-Control.
			tiered.WithLocalTTL(10*time.Second),
			// Well above the responses' 5 s of freshness.
			tiered.WithRemoteTTL(time.Minute)))
	if err != nil {
		return nil, err
	}
	mw, err := middleware.New(pages,
		middleware.WithMeterProvider(tel.meterProvider),
		middleware.WithIgnoredQueryParams("utm_*"),
		middleware.WithErrorHandler(func(ctx context.Context, err error) {
			log.WarnContext(ctx, "HTTP cache", "error", err)
		}))
	if err != nil {
		pages.Close()
		return nil, err
	}
	return mw, nil
}

// logStatsEvery logs the stats every interval until ctx ends, skipping a
// line when nothing changed since the last one. Zero interval: no lines.
func logStatsEvery(ctx context.Context, log *slog.Logger, interval time.Duration, stats func() Stats) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := stats()
		st.Bus = nil // heartbeats and such would make every line differ
		if st != last {
			logStats(log, "stats", st)
			last = st
		}
	}
}

// dialable turns a listen address such as [::]:8080 into one a client can
// use, such as localhost:8080.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
