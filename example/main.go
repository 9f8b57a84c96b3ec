// Command example is a small products service on tiercache: an in-memory
// catalog with a simulated query delay, read through a two-tier cache
// (ristretto L1 in the process, Redis L2 shared by every replica), with
// invalidation over Redis pub/sub after writes.
//
// From the repository root:
//
//	go run ./example                  # embedded Redis, listens on :8080
//	TIERCACHE_REDIS_ADDR=127.0.0.1:6379 go run ./example
//	TIERCACHE_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001 go run ./example -addr :8081
//
// Endpoints:
//
//	GET    /products/{id}       one product (404 if absent), via GetOrLoad
//	GET    /products?ids=1,2,3  several products, via GetOrLoadMany
//	PUT    /products/{id}       create or replace {"name": ..., "price_cents": ...}, then Delete the key
//	DELETE /products/{id}       delete the product, then Delete the key
//	GET    /stats               cache tier hits, DB queries and queries saved
//
// Configuration (a flag overrides its environment variable):
//
//	-addr            ADDR                     listen address (default :8080)
//	-query-delay     QUERY_DELAY              simulated duration of a query (default 20ms)
//	-products        PRODUCTS                 number of products in the catalog (default 500)
//	-stats-interval  STATS_INTERVAL           period of the stats log line, 0 for none (default 10s)
//	-cache-name      CACHE_NAME               namespace of the cache in Redis (default products)
//	                 TIERCACHE_REDIS_ADDR     standalone Redis host:port
//	                 TIERCACHE_CLUSTER_ADDRS  comma-separated Redis Cluster nodes (wins over TIERCACHE_REDIS_ADDR)
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

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

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
	// "products". Replicas of one service share it; tests on a shared Redis
	// give each run its own.
	CacheName string
	// Logger receives the service's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Catalog is the table the service serves. Nil means a new catalog of
	// Products rows with QueryDelay; replicas in one process (tests) share
	// one to stand for a shared database.
	Catalog *Catalog
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
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./example [flags]\n\n"+
			"Redis: TIERCACHE_CLUSTER_ADDRS (comma-separated Cluster nodes) or TIERCACHE_REDIS_ADDR (host:port);\n"+
			"with neither, an embedded in-process Redis is started.\n\nflags:")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, nil); err != nil {
		slog.Error("example: stopped", "error", err)
		os.Exit(1)
	}
}

// run starts the service and serves until ctx ends, then shuts down
// gracefully: it stops accepting requests, lets those in progress finish
// (up to 10 s), and closes the cache, the bus and Redis. Once it listens it
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

	rc, err := connectRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer rc.Close()

	// One bus per process, shared by every cache. Standalone Redis (and the
	// embedded one) uses PUBLISH/SUBSCRIBE, a Cluster sharded pub/sub.
	bus, err := invalidation.New(rc.client, invalidation.WithLogger(log))
	if err != nil {
		return fmt.Errorf("starting the invalidation bus: %w", err)
	}
	defer bus.Close()

	l1, err := local.New(local.Options[Product]{MaxEntries: 10_000})
	if err != nil {
		return err
	}
	l2, err := remote.New(rc.client)
	if err != nil {
		l1.Close()
		return err
	}
	cache, err := tiered.New(cfg.CacheName, l1, l2,
		tiered.WithInvalidation(bus),
		tiered.WithLogger(log),
		tiered.WithLocalTTL(10*time.Second),
		tiered.WithRemoteTTL(10*time.Minute))
	if err != nil {
		l1.Close()
		return err
	}
	// Deferred calls run in reverse: the cache closes before the bus, the
	// bus before the Redis client.
	defer cache.Close()

	catalog := cfg.Catalog
	if catalog == nil {
		catalog = NewCatalog(cfg.Products, cfg.QueryDelay)
	}
	srv := &server{
		catalog: catalog,
		cache:   cache,
		bus:     bus,
		redis:   rc.mode,
		log:     log,
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("products service listening",
		"addr", ln.Addr().String(), "products", catalog.Len(), "query_delay", catalog.delay,
		"redis", rc.mode, "try", "curl http://"+dialable(ln.Addr())+"/products/42")

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
