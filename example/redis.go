package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// redisConn is the Redis the service runs on: a client and, for the
// embedded server, the server itself.
type redisConn struct {
	client   redis.UniversalClient // *redis.Client or *redis.ClusterClient
	mode     string                // "embedded", "standalone" or "cluster"
	addr     string                // what it connected to, for logs and /stats
	embedded *miniredis.Miniredis  // nil unless mode is "embedded"
}

// connectRedis connects to the Redis Cluster of cfg.ClusterAddrs if set,
// else to the standalone Redis at cfg.RedisAddr if set, else starts an
// embedded in-process Redis (miniredis) on a free local port. It pings real
// servers so that a wrong address fails at startup, not on the first
// request.
func connectRedis(ctx context.Context, cfg Config, log *slog.Logger) (*redisConn, error) {
	var rc redisConn
	switch {
	case len(cfg.ClusterAddrs) > 0:
		rc.mode, rc.addr = "cluster", strings.Join(cfg.ClusterAddrs, ",")
		rc.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.ClusterAddrs})
	case cfg.RedisAddr != "":
		rc.mode, rc.addr = "standalone", cfg.RedisAddr
		rc.client = redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
	default:
		m := miniredis.NewMiniRedis()
		// Make TTLs run on the wall clock, as on a real server (miniredis
		// only expires keys on FastForward otherwise).
		m.ClockTTL(true)
		if err := m.Start(); err != nil {
			return nil, fmt.Errorf("starting the embedded Redis: %w", err)
		}
		rc.mode, rc.addr, rc.embedded = "embedded", m.Addr(), m
		rc.client = redis.NewClient(&redis.Options{Addr: m.Addr()})
		log.Info("no TIERCACHE_REDIS_ADDR or TIERCACHE_CLUSTER_ADDRS set: started an embedded in-process Redis (miniredis); "+
			"it lives and dies with this process, so every replica would have its own",
			"addr", m.Addr())
		return &rc, nil
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rc.client.Ping(pctx).Err(); err != nil {
		rc.client.Close()
		// A common cause: test/redis.sh stop left the exports of
		// test/redis.sh env in the shell.
		return nil, fmt.Errorf("connecting to the Redis %s at %s: %w\n"+
			"Is that Redis running? Start the test harness with test/redis.sh start, "+
			"or run `unset TIERCACHE_REDIS_ADDR TIERCACHE_CLUSTER_ADDRS` to use the embedded in-process Redis",
			rc.mode, rc.addr, err)
	}
	log.Info("using Redis", "mode", rc.mode, "addr", rc.addr)
	return &rc, nil
}

// Close closes the client, then the embedded server if there is one.
func (rc *redisConn) Close() error {
	err := rc.client.Close()
	if rc.embedded != nil {
		rc.embedded.Close()
	}
	return err
}
