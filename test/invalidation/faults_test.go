package invalidation_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tcpproxy"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// The staleness bound under real faults (issue 10): several nodes in one
// process, each with its own go-redis clients, L1 and bus, do random reads,
// sets and deletes of versioned values (the "database" is written first);
// midway a fault hits Redis or one node. The checker fails the test if a
// read returns a value replaced more than the bound before the read began,
// or a value never written.
//
// Bus timing: heartbeat 100 ms, lag limit 100 ms, 3 silence intervals, so
// D = max(100 + 2×100, 3×100) + 25 = 325 ms; the checked bound adds slack
// for a busy CI machine.
const (
	faultHeartbeat = 100 * time.Millisecond
	faultSlack     = 400 * time.Millisecond
	faultRun       = 3 * time.Second
	faultKeys      = 30
)

// faultRig describes one fault run.
type faultRig struct {
	// clients returns node i's client.
	clients func(t *testing.T, i int) client
	// inject applies the fault (and undoes it) while the workload runs; it
	// runs on its own goroutine, about a second into the run.
	inject func(t *testing.T)
	// faulted is the node that suffers the fault alone (it only reads), or
	// -1 when the fault hits every node.
	faulted int
}

// runFault runs the workload on 4 nodes under rig's fault and checks the
// bound. It returns the worst staleness seen.
func runFault(t *testing.T, rig faultRig) time.Duration {
	t.Helper()
	ctx := ctxT(t)
	const nodeCount = 4
	bound := time.Duration(0)
	i := 0
	topo := topology{name: "fault", client: func(tb testing.TB) client {
		c := rig.clients(t, i)
		i++
		return c
	}}
	nodes := newNodes(t, topo, nodeCount, redistest.Name(t), nodeConfig{
		busOpts: []invalidation.Option{
			invalidation.WithHeartbeatInterval(faultHeartbeat),
			invalidation.WithLagLimit(faultHeartbeat),
			invalidation.WithPublishTimeout(200 * time.Millisecond),
			invalidation.WithStartTimeout(10 * time.Second),
		},
		cacheOpts: []tiered.Option{
			tiered.WithLocalTTL(10 * time.Second), // far above D: the bus must do the work
			tiered.WithRemoteTimeout(300 * time.Millisecond),
		},
	})
	bound = nodes[0].bus.DetectionTime() + faultSlack
	h := newHistory(faultKeys)
	load := func(_ context.Context, key string) (string, error) { return h.current(key), nil }

	var wg sync.WaitGroup
	var reads, failed atomic.Int64
	deadline := time.Now().Add(faultRun)
	for i, n := range nodes {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				key := "k" + strconv.Itoa(r.IntN(faultKeys))
				start := time.Now()
				v, err := n.cache.GetOrLoad(ctx, key, load)
				if err != nil {
					failed.Add(1) // L2 unreachable: no value, nothing to check
				} else {
					h.read(n.name, key, start, v)
					reads.Add(1)
				}
				time.Sleep(200 * time.Microsecond) // leave CPU to the buses
			}
		})
		if i == rig.faulted {
			continue // a faulted node only reads: its writes would only fail
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 2))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				key := "k" + strconv.Itoa(r.IntN(faultKeys))
				op := func(v string) error { return n.cache.Set(ctx, key, v) }
				if r.IntN(2) == 0 {
					op = func(string) error { return n.cache.Delete(ctx, key) }
				}
				h.writeRetrying(ctx, key, op)
				time.Sleep(time.Duration(5+r.IntN(20)) * time.Millisecond) // pacing
			}
		})
	}
	wg.Go(func() {
		select {
		case <-time.After(faultRun / 3):
			rig.inject(t)
		case <-ctx.Done():
		}
	})
	wg.Wait()

	worst, violations := h.check(bound)
	var flushes, unhealthy uint64
	for _, n := range nodes {
		s := n.bus.Stats()
		flushes += s.Flushes.Gap + s.Flushes.Silence + s.Flushes.Resubscribe + s.Flushes.Unhealthy
		unhealthy += s.Unhealthy
	}
	t.Logf("%d reads (%d failed), %d writes; %d bus flushes, %d unhealthy periods; worst staleness %v (bound %v = D %v + slack)",
		reads.Load(), failed.Load(), h.writes(), flushes, unhealthy, worst, bound, nodes[0].bus.DetectionTime())
	for _, v := range violations[:min(len(violations), 10)] {
		t.Error(v)
	}
	if reads.Load() == 0 || h.writes() == 0 {
		t.Fatal("the workload did nothing")
	}
	return worst
}

// TestStalenessUnderClientKill: CLIENT KILL TYPE pubsub drops every
// subscription at once.
func TestStalenessUnderClientKill(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	runFault(t, faultRig{
		clients: func(t *testing.T, _ int) client { return srv.Client(t) },
		faulted: -1,
		inject: func(t *testing.T) {
			n, err := srv.Client(t).ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
			if err != nil || n == 0 {
				t.Errorf("CLIENT KILL TYPE pubsub: %d, %v", n, err)
			}
		},
	})
}

// proxied returns a client of srv through a new TCP proxy, with go-redis's
// timeouts short enough for a test and long enough for -race.
func proxied(t *testing.T, srv *redistest.Server) (*redis.Client, *tcpproxy.Proxy) {
	p, err := tcpproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c, p
}

// TestStalenessUnderPartition: node D's connections (L2 and bus) open but
// never answer for a second: a frozen sidecar or a half-open link. D keeps
// serving from L1; it must stop serving what others replaced within D.
func TestStalenessUnderPartition(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	var proxy *tcpproxy.Proxy
	runFault(t, faultRig{
		clients: func(t *testing.T, i int) client {
			if i == 3 {
				var c *redis.Client
				c, proxy = proxied(t, srv)
				return c
			}
			return srv.Client(t)
		},
		faulted: 3,
		inject: func(t *testing.T) {
			proxy.SetMode(tcpproxy.Blackhole)
			time.Sleep(time.Second) // the length of the partition
			proxy.SetMode(tcpproxy.Forward)
		},
	})
}

// TestStalenessUnderDelay: node D's traffic is delayed by 500 ms (five lag
// limits) for a second, nothing lost.
func TestStalenessUnderDelay(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	var proxy *tcpproxy.Proxy
	runFault(t, faultRig{
		clients: func(t *testing.T, i int) client {
			if i == 3 {
				var c *redis.Client
				c, proxy = proxied(t, srv)
				return c
			}
			return srv.Client(t)
		},
		faulted: 3,
		inject: func(t *testing.T) {
			proxy.SetDelay(500 * time.Millisecond)
			time.Sleep(time.Second) // the length of the lag
			proxy.SetDelay(0)
		},
	})
}

// TestStalenessUnderFrozenPrimary: the Redis server is frozen (SIGSTOP) for
// a second: every node's L2 calls and bus hang.
func TestStalenessUnderFrozenPrimary(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t)
	runFault(t, faultRig{
		clients: func(t *testing.T, _ int) client {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 500 * time.Millisecond,
				WriteTimeout: 500 * time.Millisecond, MaxRetries: -1})
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
		faulted: -1,
		inject: func(t *testing.T) {
			srv.Pause(t)
			time.Sleep(time.Second) // the length of the freeze
			srv.Resume(t)
		},
	})
}

// TestStalenessUnderClusterFailover: CLUSTER FAILOVER on the replica of a
// private one-primary Cluster moves every slot, and the shard channels'
// subscriptions with them.
func TestStalenessUnderClusterFailover(t *testing.T) {
	t.Parallel()
	pc := redistest.NewCluster(t, 1, 1)
	runFault(t, faultRig{
		clients: func(t *testing.T, _ int) client {
			return pc.Client(t, &redis.ClusterOptions{ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
		},
		faulted: -1,
		inject: func(t *testing.T) {
			r := redis.NewClient(&redis.Options{Addr: pc.Replicas[0].Addr()})
			defer r.Close()
			if err := r.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
				t.Errorf("CLUSTER FAILOVER: %v", err)
			}
		},
	})
}
