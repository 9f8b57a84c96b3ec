package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// TestConnectRefusedSaysHowToGetTheEmbeddedRedis checks the error a user gets
// when TIERCACHE_REDIS_ADDR still points at a stopped harness.
func TestConnectRefusedSaysHowToGetTheEmbeddedRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, cfg := range []Config{{RedisAddr: addr}, {ClusterAddrs: []string{addr}}} {
		rc, err := connectRedis(context.Background(), cfg, log)
		if err == nil {
			rc.Close()
			t.Fatalf("connectRedis(%+v) succeeded against a closed port", cfg)
		}
		for _, want := range []string{addr, "unset TIERCACHE_REDIS_ADDR TIERCACHE_CLUSTER_ADDRS", "test/redis.sh start"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
}
