package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// The harness (test/redis.sh env) names the servers in these variables.
const (
	envStandalone = "TIERCACHE_REDIS_ADDR"
	envCluster    = "TIERCACHE_CLUSTER_ADDRS"
)

type env struct {
	standalone string
	cluster    []string
	version    string
	run        string // unique per run: prefixes cache names
}

func loadEnv() (*env, error) {
	e := &env{standalone: strings.TrimSpace(os.Getenv(envStandalone))}
	if s := strings.TrimSpace(os.Getenv(envCluster)); s != "" {
		e.cluster = strings.Split(s, ",")
	}
	if e.standalone == "" || len(e.cluster) == 0 {
		return nil, errors.New(`peers: $TIERCACHE_REDIS_ADDR and $TIERCACHE_CLUSTER_ADDRS must name the harness's servers: run "make bench-peers", or test/redis.sh start && eval "$(test/redis.sh env)"`)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	e.run = "peers" + hex.EncodeToString(b[:])
	c := e.standaloneClient()
	defer c.Close()
	info, err := c.Info(context.Background(), "server").Result()
	if err != nil {
		return nil, fmt.Errorf("peers: standalone Redis at %s: %w", e.standalone, err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			e.version = v
		}
	}
	return e, nil
}

func (e *env) standaloneClient() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: e.standalone})
}

func (e *env) clusterClient() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: e.cluster})
}

// client returns a new client of the deployment dep ("standalone" or
// "cluster").
func (e *env) client(dep string) redis.UniversalClient {
	if dep == "cluster" {
		return e.clusterClient()
	}
	return e.standaloneClient()
}

// val is the cached value: a 64-byte struct.
type val struct {
	ID, A, B, C, D, E, F, G int64
}

func mkVal(id int64) val { return val{ID: id, A: 1, B: 2, C: 3, D: 4, E: 5, F: 6, G: 7} }

// node is one tiercache instance standing for one service replica: its own
// client, L1, L2 store and (optionally) bus.
type node struct {
	c     *tiered.Cache[val]
	l1    *local.Store[val]
	rdb   redis.UniversalClient
	bus   *invalidation.Bus
	close func()
}

type nodeOpts struct {
	noL1      bool
	withBus   bool
	l1Entries int64 // 0: 100,000
	opts      []tiered.Option
}

func (o nodeOpts) entries() int64 {
	if o.l1Entries == 0 {
		return 100_000
	}
	return o.l1Entries
}

func newL1(maxEntries int64) (*local.Store[val], error) {
	return local.New[val](local.WithMaxEntries(maxEntries))
}

// newNode builds a cache called name on a fresh client of dep.
func (e *env) newNode(dep, name string, o nodeOpts) (n *node, err error) {
	n = &node{rdb: e.client(dep)}
	closers := []func(){func() { n.rdb.Close() }}
	n.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	// Open the connections (and load a Cluster's slot map) before anything
	// is timed.
	ctx := context.Background()
	if cc, ok := n.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	} else {
		err = n.rdb.Ping(ctx).Err()
	}
	if err != nil {
		n.close()
		return nil, err
	}
	st, err := remote.New(n.rdb)
	if err != nil {
		n.close()
		return nil, err
	}
	opts := append([]tiered.Option{tiered.WithRemoteTimeout(time.Second)}, o.opts...)
	if o.withBus {
		// All nodes share one process and two cores here: fewer channels
		// and heartbeats than the defaults, or the buses' own traffic
		// (nodes x channels heartbeats, each to every node) swamps the run.
		n.bus, err = invalidation.New(n.rdb, invalidation.WithChannelPrefix(e.run+":bus"),
			invalidation.WithShards(3), invalidation.WithHeartbeatInterval(5*time.Second))
		if err != nil {
			n.close()
			return nil, err
		}
		closers = append(closers, func() { n.bus.Close() })
		opts = append(opts, tiered.WithInvalidation(n.bus))
	}
	var l1 driver.Local[val]
	if !o.noL1 {
		if n.l1, err = newL1(o.entries()); err != nil {
			n.close()
			return nil, err
		}
		l1 = n.l1
	}
	n.c, err = tiered.New[val](name, l1, st, opts...)
	if err != nil {
		n.close()
		return nil, err
	}
	closers = append(closers, func() { n.c.Close() })
	return n, nil
}

func closeAll(nodes []*node) {
	for _, n := range nodes {
		n.close()
	}
}
