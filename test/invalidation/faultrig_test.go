package invalidation_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// The fault-test harness: a scenario names its Redis (setup), what it does
// to it (fault, then heal after hold) and what must notice; run drives the
// workload around it and checks the result.

const (
	faultNodes = 4
	faultKeys  = 30
	allNodes   = -1
	// faultLocalTTL is far above D: the bus must do the work.
	faultLocalTTL = 10 * time.Second
)

// A scenario is one fault run.
type scenario struct {
	name   string
	timing timing
	// setup starts what the scenario needs in r and returns node i's
	// clients (for its bus and its L2).
	setup func(t *testing.T, r *rig) func(t testing.TB, i int) (bus, l2 client)
	// fault applies the fault; heal (if not nil) undoes it hold later.
	fault, heal func(t *testing.T, r *rig)
	hold        time.Duration
	// faulted is the node that suffers the fault alone (it only reads:
	// its writes would only fail), or allNodes.
	faulted int
	detect  detection
}

// timing is the configuration of the bus and the clients, and the length
// of the workload around the fault.
type timing struct {
	heartbeat    time.Duration // 0: the bus's default (and its default lag limit)
	redisTimeout time.Duration // go-redis read, write and dial timeouts; 0: go-redis's defaults
	before       time.Duration // workload before the fault
	after        time.Duration // workload after the heal
}

// detection is what the faulted nodes must count.
type detection struct {
	name  string
	count func(invalidation.Stats) uint64
	// keepsFlushing: the faulted buses are unhealthy while the fault lasts,
	// and must keep every L1 entry under D.
	keepsFlushing bool
}

// rig is what setup started, for fault and heal.
type rig struct {
	timing  timing
	srv     *redistest.Server
	cluster *redistest.PrivateCluster
	proxy   *proxySet // in front of the faulted node's connections
}

// standalone returns a client of addr with r's timeouts, dialing through
// dial when not nil.
func (r *rig) standalone(t testing.TB, addr string, dial func(context.Context, string, string) (net.Conn, error)) *redis.Client {
	o := &redis.Options{Addr: addr, Dialer: dial}
	if d := r.timing.redisTimeout; d > 0 {
		o.ReadTimeout, o.WriteTimeout, o.DialTimeout, o.MaxRetries = d, d, d, -1
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clusterClient returns a Cluster client of addrs with r's timeouts,
// dialing through dial when not nil.
func (r *rig) clusterClient(t testing.TB, addrs []string, dial func(context.Context, string, string) (net.Conn, error)) *redis.ClusterClient {
	o := &redis.ClusterOptions{Addrs: addrs, Dialer: dial}
	if d := r.timing.redisTimeout; d > 0 {
		o.ReadTimeout, o.WriteTimeout, o.DialTimeout = d, d, d
	}
	c := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var quiet = slog.New(slog.DiscardHandler)

// Setups.

// privateServer starts a private server every node uses directly.
func privateServer(t *testing.T, r *rig) func(testing.TB, int) (client, client) {
	r.srv = redistest.NewServer(t)
	return func(t testing.TB, _ int) (client, client) {
		c := r.standalone(t, r.srv.Addr(), nil)
		return c, c
	}
}

// proxiedNode is the node whose connections go through the proxies in
// the scenarios that fault one node.
const proxiedNode = 3

// Where the nodes' Redis is.
type redisAt int

const (
	privateStandalone redisAt = iota // a private server (redistest.NewServer)
	sharedStandalone                 // the harness's standalone server
	sharedCluster                    // the harness's Cluster
)

// Which of proxiedNode's connections go through the proxies.
type proxied int

const (
	proxyAll proxied = iota // bus and L2
	proxyBus                // the bus only
)

// viaProxy is the setup of the scenarios that fault one node: every node
// uses Redis at at; proxiedNode reaches it through the proxies (all its
// connections, or its bus's only).
func viaProxy(at redisAt, which proxied) func(*testing.T, *rig) func(testing.TB, int) (client, client) {
	return func(t *testing.T, r *rig) func(testing.TB, int) (client, client) {
		r.proxy = newProxySet(t)
		var connect func(testing.TB, func(context.Context, string, string) (net.Conn, error)) client
		switch at {
		case privateStandalone:
			r.srv = redistest.NewServer(t)
			connect = func(t testing.TB, dial func(context.Context, string, string) (net.Conn, error)) client {
				return r.standalone(t, r.srv.Addr(), dial)
			}
		case sharedStandalone:
			addr := redistest.StandaloneAddr(t)
			connect = func(t testing.TB, dial func(context.Context, string, string) (net.Conn, error)) client {
				return r.standalone(t, addr, dial)
			}
		case sharedCluster:
			addrs := redistest.ClusterAddrs(t)
			connect = func(t testing.TB, dial func(context.Context, string, string) (net.Conn, error)) client {
				return r.clusterClient(t, addrs, dial)
			}
		}
		return func(t testing.TB, i int) (client, client) {
			switch {
			case i != proxiedNode:
				c := connect(t, nil)
				return c, c
			case which == proxyBus:
				return connect(t, r.proxy.dial), connect(t, nil)
			}
			c := connect(t, r.proxy.dial)
			return c, c
		}
	}
}

// privateCluster starts a private Cluster of one primary and its replica.
func privateCluster(t *testing.T, r *rig) func(testing.TB, int) (client, client) {
	r.cluster = redistest.NewCluster(t, 1, 1)
	return func(t testing.TB, _ int) (client, client) {
		o := &redis.ClusterOptions{}
		if d := r.timing.redisTimeout; d > 0 {
			o.ReadTimeout, o.WriteTimeout = d, d
		}
		c := r.cluster.Client(t, o)
		return c, c
	}
}

// lateness measures how late a goroutine of the test process gets to run:
// the worst delay of a 10 ms ticker until stop is closed.
func lateness(stop <-chan struct{}) (worst func() time.Duration) {
	var w atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		const period = 10 * time.Millisecond
		t := time.NewTicker(period)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				if late := int64(now.Sub(last) - period); late > w.Load() {
					w.Store(late)
				}
				last = now
			}
		}
	}()
	return func() time.Duration {
		<-done
		return time.Duration(w.Load())
	}
}

// slackBase is what the checked bounds add to D for measurement (a read's
// start is taken before it enters the cache, a write's end after it
// returned), on top of the worst scheduling delay the run saw: on a busy
// machine running -race the bus's watchdog can be late by as much as any
// other goroutine.
const slackBase = 50 * time.Millisecond

func (tm timing) busOpts() []invalidation.Option {
	// Quiet: under -v, thousands of warnings a second into a slow pipe
	// stall whoever logs, the watchdog included. The checks report what
	// matters.
	opts := []invalidation.Option{invalidation.WithStartTimeout(10 * time.Second), invalidation.WithLogger(quiet)}
	if tm.heartbeat > 0 {
		opts = append(opts,
			invalidation.WithHeartbeatInterval(tm.heartbeat),
			invalidation.WithLagLimit(tm.heartbeat),
			invalidation.WithPublishTimeout(2*tm.heartbeat))
	}
	return opts
}

// run runs the workload on faultNodes nodes around sc's fault and checks
// the bound, the detection and the flushing.
func (sc scenario) run(t *testing.T) {
	ctx := ctxT(t)
	r := &rig{timing: sc.timing}
	clients := sc.setup(t, r)
	cacheOpts := []tiered.Option{tiered.WithLocalTTL(faultLocalTTL), tiered.WithLogger(quiet)}
	if sc.timing.redisTimeout > 0 {
		cacheOpts = append(cacheOpts, tiered.WithRemoteTimeout(300*time.Millisecond))
	}
	nodes := newNodes(t, topology{name: sc.name}, faultNodes, redistest.Name(t), nodeConfig{
		clients:   clients,
		busOpts:   sc.timing.busOpts(),
		cacheOpts: cacheOpts,
	})
	d := nodes[0].bus.DetectionTime()
	var hit []*node // the nodes the fault hits
	for i, n := range nodes {
		if sc.faulted == allNodes || sc.faulted == i {
			hit = append(hit, n)
		}
	}
	lives := make([]*lifeLog, len(hit))
	for i, n := range hit {
		lives[i] = n.l1.trackLife()
	}

	h := newHistory(faultKeys)
	load := func(_ context.Context, key string) (string, error) { return h.current(key), nil }
	var wg sync.WaitGroup
	var reads, failed atomic.Int64
	stop := make(chan struct{})
	late := lateness(stop)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return ctx.Err() != nil
		}
	}
	for i, n := range nodes {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 1))
			for !stopped() {
				key := "k" + strconv.Itoa(rnd.IntN(faultKeys))
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
		if i == sc.faulted {
			continue
		}
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 2))
			for !stopped() {
				key := "k" + strconv.Itoa(rnd.IntN(faultKeys))
				op := func(v string) error { return n.cache.Set(ctx, key, v) }
				if rnd.IntN(2) == 0 {
					op = func(string) error { return n.cache.Delete(ctx, key) }
				}
				h.writeRetrying(ctx, key, op)
				time.Sleep(time.Duration(5+rnd.IntN(20)) * time.Millisecond) // pacing
			}
		})
	}

	// The fault's schedule: these waits are the lengths of the phases, not
	// synchronisation.
	phase := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	phase(sc.timing.before)
	base := make([]invalidation.Stats, len(hit))
	wasUnhealthy := make([]bool, len(hit))
	for i, n := range hit {
		base[i] = n.bus.Stats()
		wasUnhealthy[i] = !n.bus.Status().Healthy
	}
	faultAt := time.Now()
	sc.fault(t, r)
	phase(sc.hold)
	if sc.heal != nil {
		sc.heal(t, r)
	}
	healAt := time.Now()
	phase(sc.timing.after)
	close(stop)
	wg.Wait()
	end := time.Now()

	// The bound.
	slack := slackBase + late()
	bound := d + slack
	worst, violations := h.check(bound)
	t.Logf("%s: %d reads (%d failed), %d writes; worst staleness %v, bound %v (D %v + %v slack)",
		sc.name, reads.Load(), failed.Load(), h.writes(), worst, bound, d, slack)
	for _, v := range violations[:min(len(violations), 10)] {
		t.Error(v)
	}
	if reads.Load() == 0 || h.writes() == 0 {
		t.Fatal("the workload did nothing")
	}

	// Detection, and flushing while the fault lasted.
	windowEnd := healAt.Add(d)
	if windowEnd.After(end) {
		windowEnd = end
	}
	for i, n := range hit {
		s := n.bus.Stats()
		got := sc.detect.count(s) - sc.detect.count(base[i])
		flushes, took := lives[i].flushTimes()
		// The L1's own latency is not the bus's: a flush counts from
		// when it returned, and the bound for this node allows the
		// longest one.
		nodeBound := bound + took
		first := time.Duration(-1)
		for _, f := range flushes {
			if !f.Before(faultAt) {
				first = f.Sub(faultAt)
				break
			}
		}
		longest := lives[i].longest(faultAt, windowEnd)
		maxGap := flushGap(flushes, faultAt.Add(first), healAt)
		during := 0
		for _, f := range flushes {
			if !f.Before(faultAt) && !f.After(healAt) {
				during++
			}
		}
		t.Logf("node %s: %s %d times; first flush %v after the fault; %d unhealthy flushes; %d flushes in the fault, at most %v apart, each taking up to %v; longest L1 entry in it %v",
			n.name, sc.detect.name, got, first, s.Flushes.Unhealthy, during, maxGap, took, longest)
		if got == 0 && !(sc.detect.keepsFlushing && wasUnhealthy[i]) {
			t.Errorf("node %s: not %s after the fault (%s counted %d before, %d after)",
				n.name, sc.detect.name, sc.detect.name, sc.detect.count(base[i]), sc.detect.count(s))
		}
		if first < 0 {
			t.Errorf("node %s: no L1 flush after the fault", n.name)
		}
		if sc.detect.keepsFlushing {
			// (A resubscription waits for Redis: a failover takes what
			// it takes. Unhealthy is the bus's own verdict.)
			if first > nodeBound {
				t.Errorf("node %s: first L1 flush %v after the fault, want within %v (D + slack + longest flush)", n.name, first, nodeBound)
			}
			if longest > nodeBound {
				t.Errorf("node %s: an L1 entry stayed %v in the fault, want at most %v (D + slack + longest flush)", n.name, longest, nodeBound)
			}
			// The bus flushes every D/2 while unhealthy; a watchdog stuck
			// for the length of the fault would not. (Not a gap check: a
			// loaded machine stretches single gaps, and the entries'
			// lifetimes above are what the bound needs.)
			long := healAt.Sub(faultAt)
			if want := int((long - (nodeBound - d)) / d); during < want {
				t.Errorf("node %s: %d L1 flushes in the %v fault, want at least %d (one per D, less the slack and the longest flush)",
					n.name, during, long.Round(time.Millisecond), want)
			}
		}
	}
}

// flushGap returns the longest time in [from, to] without a flush.
func flushGap(flushes []time.Time, from, to time.Time) time.Duration {
	var gap time.Duration
	last := from
	for _, f := range flushes {
		if f.Before(from) {
			continue
		}
		if f.After(to) {
			break
		}
		gap = max(gap, f.Sub(last))
		last = f
	}
	return max(gap, to.Sub(last))
}
