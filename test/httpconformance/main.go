// Command httpconformance serves the middleware as the HTTP cache
// conformance suite (http-cache-tests on npm) expects a cache: a proxy in
// front of the suite's origin server. It is the deployment docs/http.md
// describes: an L1, a Redis L2 and the invalidation bus under one tiered
// cache (LocalTTL 10 s, no default TTL unless -default-ttl, heuristic
// freshness with its usual values unless -heuristic=false, Surrogate-Control
// read as device token "tiercache" unless -surrogate=""), the middleware in
// front of httputil.ReverseProxy. run.sh starts it; it runs
// until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address the cache listens on")
	origin := flag.String("origin", "http://127.0.0.1:8000", "the suite's origin server")
	redisAddr := flag.String("redis", os.Getenv("TIERCACHE_REDIS_ADDR"), "standalone Redis address (default $TIERCACHE_REDIS_ADDR)")
	name := flag.String("name", "conformance-"+strconv.FormatInt(time.Now().UnixNano(), 36), "tiered cache name (the Redis key namespace)")
	heuristic := flag.Bool("heuristic", true, "heuristic freshness: middleware.WithHeuristicFreshness(DefaultHeuristicFraction, DefaultHeuristicMax)")
	defaultTTL := flag.Duration("default-ttl", 0, "middleware.WithDefaultTTL (0: none)")
	surrogate := flag.String("surrogate", "tiercache", "middleware.WithSurrogateControl device token (\"\": Surrogate-Control ignored)")
	flag.Parse()
	if err := run(*listen, *origin, *redisAddr, *name, *heuristic, *defaultTTL, *surrogate); err != nil {
		log.Fatal(err)
	}
}

func run(listen, origin, redisAddr, name string, heuristic bool, defaultTTL time.Duration, surrogate string) error {
	if redisAddr == "" {
		return errors.New("no Redis address: pass -redis or eval \"$(test/redis.sh env)\"")
	}
	target, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", redisAddr, err)
	}

	bus, err := invalidation.New(rdb)
	if err != nil {
		return err
	}
	defer bus.Close()
	l1, err := local.New[*middleware.Response](local.WithMaxCost(64<<20), local.WithCost((*middleware.Response).Size))
	if err != nil {
		return err
	}
	l2, err := remote.New(rdb, remote.WithCodec(middleware.Codec{}), remote.WithMaxValueBytes(2<<20))
	if err != nil {
		return err
	}
	pages, err := tiered.New[*middleware.Response](name, l1, l2,
		tiered.WithInvalidation(bus), tiered.WithLocalTTL(10*time.Second), tiered.WithRemoteTTL(time.Hour))
	if err != nil {
		return err
	}
	defer pages.Close()
	opts := []middleware.Option{middleware.WithDefaultTTL(defaultTTL)}
	if heuristic {
		opts = append(opts, middleware.WithHeuristicFreshness(middleware.DefaultHeuristicFraction, middleware.DefaultHeuristicMax))
	}
	if surrogate != "" {
		opts = append(opts, middleware.WithSurrogateControl(surrogate))
	}
	mw, err := middleware.New(pages, opts...)
	if err != nil {
		return err
	}
	defer mw.Close()

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mw.Handler(httputil.NewSingleHostReverseProxy(target)), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("httpconformance: cache on %s in front of %s, Redis %s, namespace %s", ln.Addr(), origin, redisAddr, name)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	<-errc
	return nil
}
