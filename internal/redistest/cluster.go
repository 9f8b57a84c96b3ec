package redistest

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of clusters made by
// NewCluster: a primary that stops answering is considered failed, and its
// replica promoted, this long after.
const ClusterNodeTimeout = 2 * time.Second

// PrivateCluster is a Redis Cluster of private servers for one test, made by
// [NewCluster]: the test may stop, kill, pause and resume its nodes.
type PrivateCluster struct {
	// Primaries are the primaries, primary i serving the i-th equal range
	// of the 16384 slots.
	Primaries []*Server
	// Replicas[i] is the replica of Primaries[i], nil if it has none.
	Replicas []*Server
}

// NewCluster starts a private Redis Cluster of primaries primaries (at least
// one) sharing the slots equally, and one replica for each of the first
// replicas primaries, with cluster-node-timeout [ClusterNodeTimeout] and
// cluster-require-full-coverage no (so the other primaries keep serving
// while one is down). extraArgs go to every redis-server. It waits until
// every node says cluster_state:ok and every replica is in sync, and stops
// the nodes when the test ends.
func NewCluster(t testing.TB, primaries, replicas int, extraArgs ...string) *PrivateCluster {
	t.Helper()
	if primaries < 1 || replicas < 0 || replicas > primaries {
		t.Fatalf("redistest: NewCluster(%d primaries, %d replicas): need 1 <= primaries and 0 <= replicas <= primaries", primaries, replicas)
	}
	args := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
		"--cluster-require-full-coverage", "no",
		"--cluster-replica-validity-factor", "0",
	}, extraArgs...)
	pc := &PrivateCluster{Replicas: make([]*Server, primaries)}
	var all []*Server
	for range primaries {
		s := newServer(t, freeClusterPort, args)
		pc.Primaries = append(pc.Primaries, s)
		all = append(all, s)
	}
	for i := range replicas {
		s := newServer(t, freeClusterPort, args)
		pc.Replicas[i] = s
		all = append(all, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("redistest: NewCluster: %s: %v", what, err)
		}
	}
	clients := make(map[*Server]*redis.Client)
	for _, s := range all {
		c := redis.NewClient(&redis.Options{Addr: s.Addr()})
		defer c.Close()
		clients[s] = c
	}
	per := slotCount / primaries
	for i, p := range pc.Primaries {
		lo, hi := i*per, (i+1)*per-1
		if i == primaries-1 {
			hi = slotCount - 1
		}
		must("ADDSLOTSRANGE", clients[p].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err())
	}
	first := pc.Primaries[0]
	port := first.Addr()[strings.LastIndexByte(first.Addr(), ':')+1:]
	for _, s := range all[1:] {
		must("MEET", clients[s].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", port).Err())
	}
	poll(t, ctx, "every node to know every other", func() error {
		for _, s := range all {
			nodes, err := clients[s].ClusterNodes(ctx).Result()
			if err != nil {
				return err
			}
			if n := strings.Count(strings.TrimSpace(nodes), "\n") + 1; n != len(all) || strings.Contains(nodes, "handshake") {
				return fmt.Errorf("%s knows %d of %d nodes", s.Addr(), n, len(all))
			}
		}
		return nil
	})
	for i, r := range pc.Replicas {
		if r == nil {
			continue
		}
		id, err := clients[pc.Primaries[i]].Do(ctx, "CLUSTER", "MYID").Text()
		must("MYID", err)
		must("REPLICATE", clients[r].Do(ctx, "CLUSTER", "REPLICATE", id).Err())
	}
	poll(t, ctx, "the cluster to be ok and the replicas in sync", func() error {
		for _, s := range all {
			info, err := clients[s].ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if st := infoField(info, "cluster_state"); st != "ok" {
				return fmt.Errorf("%s says cluster_state:%s", s.Addr(), st)
			}
		}
		for i, r := range pc.Replicas {
			if r == nil {
				continue
			}
			repl, err := clients[r].Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if infoField(repl, "master_link_status") != "up" {
				return fmt.Errorf("replica %s of %s is not in sync", r.Addr(), pc.Primaries[i].Addr())
			}
			for _, s := range all {
				nodes, err := clients[s].ClusterNodes(ctx).Result()
				if err != nil {
					return err
				}
				if !strings.Contains(nodes, r.Addr()) || strings.Count(nodes, "slave") < replicas {
					return fmt.Errorf("%s does not list every replica yet", s.Addr())
				}
			}
		}
		return nil
	})
	return pc
}

// Addrs returns the addresses of every node, primaries first.
func (pc *PrivateCluster) Addrs() []string {
	var out []string
	for _, s := range pc.Primaries {
		out = append(out, s.Addr())
	}
	for _, s := range pc.Replicas {
		if s != nil {
			out = append(out, s.Addr())
		}
	}
	return out
}

// Client returns a cluster client seeded with every node, closed when the
// test ends. opts, if not nil, is used with Addrs set.
func (pc *PrivateCluster) Client(t testing.TB, opts *redis.ClusterOptions) *redis.ClusterClient {
	t.Helper()
	o := redis.ClusterOptions{}
	if opts != nil {
		o = *opts
	}
	o.Addrs = pc.Addrs()
	c := redis.NewClusterClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	waitCluster(t, c, o.Addrs, clusterReadyTimeout)
	return c
}

// poll calls check until it returns nil, failing the test when ctx ends.
func poll(t testing.TB, ctx context.Context, what string, check func() error) {
	t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: NewCluster: waiting for %s: %v", what, err)
		case <-tick.C:
		}
	}
}

const slotCount = 16384

// freeClusterPort returns a loopback port that was free a moment ago, as was
// the cluster bus port 10000 above it; both are below Linux's ephemeral
// range (20000-22767 and 30000-32767).
func freeClusterPort() (int, error) {
	var err error
	for range 50 {
		n, _ := rand.Int(rand.Reader, big.NewInt(2768))
		port := 20000 + int(n.Int64())
		var l1, l2 net.Listener
		if l1, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			continue
		}
		l2, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		_ = l1.Close()
		if err == nil {
			_ = l2.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port pair found: %w", err)
}
