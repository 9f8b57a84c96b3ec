package invalidation_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/tcpproxy"
	"github.com/tiercache/tiercache/invalidation"
)

// The staleness bound under real faults (issue 10): several nodes in one
// process, each with its own go-redis clients, L1 and bus, do random reads,
// sets and deletes of versioned values (the "database" is written first);
// a fault hits Redis or one node for a while. Each scenario checks
//
//   - the bound: no read returns a value replaced more than D before the
//     read began, or a value never written;
//   - detection: every node the fault hits counted it (it went unhealthy,
//     or renewed its subscriptions) and flushed its L1 after the fault,
//     within D when it went unhealthy;
//   - for the faults that make a bus unhealthy, that it kept flushing while
//     they lasted: no L1 entry of a faulted node stayed longer than D in
//     the fault (from its start until D after it healed), and it flushed
//     at least once per D while the fault lasted.
//
// Every check allows D plus measurement slack: 50 ms plus the worst delay
// a 10 ms ticker of the test saw during the run (on a busy machine running
// -race, the bus's watchdog is late by as much as any goroutine).
//
// The harness is in faultrig_test.go.

// fast is the timing of most scenarios: 100 ms heartbeats and lag limit
// (D = max(100 + 2×100, 3×100) + 25 = 325 ms), go-redis timeouts of 500 ms.
var fast = timing{
	heartbeat:    100 * time.Millisecond,
	redisTimeout: 500 * time.Millisecond,
	before:       time.Second,
	after:        time.Second,
}

// defaults is the timing users get: the bus's defaults (1 s heartbeats,
// D = 3.25 s) and go-redis's (3 s read timeout, 5 s dial timeout).
var defaults = timing{
	before: 2 * time.Second,
	after:  5 * time.Second,
}

// redisDefaults is go-redis's default timeouts with 200 ms heartbeats (D =
// 650 ms).
var redisDefaults = timing{
	heartbeat: 200 * time.Millisecond,
	before:    time.Second,
	after:     3 * time.Second,
}

// longPartition: node D's connections open but never answer for three
// times D (at least 6 s), so that go-redis redials them, each dial waiting
// out its timeouts.
func longPartition(name string, tm timing, setup func(*testing.T, *rig) func(testing.TB, int) (client, client)) scenario {
	d := tm.heartbeat
	if d == 0 {
		d = invalidation.DefaultHeartbeatInterval
	}
	return scenario{
		name:    name,
		timing:  tm,
		setup:   setup,
		faulted: proxiedNode,
		hold:    max(6*time.Second, 10*d),
		detect:  wentUnhealthy,
		fault:   blackhole,
		heal:    forward,
	}
}

func scenarios() []scenario {
	return []scenario{
		{
			// Every subscription is dropped at once; go-redis reconnects.
			name:    "client-kill",
			timing:  fast,
			setup:   privateServer,
			faulted: allNodes,
			detect:  resubscribed,
			fault: func(t *testing.T, r *rig) {
				// On a busy machine a bus may be renewing its
				// subscription just then: kill until the kill hits.
				c := r.srv.Client(t)
				for deadline := time.Now().Add(5 * time.Second); ; {
					n, err := c.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
					if err == nil && n > 0 {
						return
					}
					if time.Now().After(deadline) {
						t.Errorf("CLIENT KILL TYPE pubsub: %d, %v", n, err)
						return
					}
					time.Sleep(10 * time.Millisecond) // retry pacing
				}
			},
		},
		{
			// Node D's connections (L2 and bus) open but never answer for a
			// second: a frozen sidecar or a half-open link.
			name:    "partition",
			timing:  fast,
			setup:   viaProxy(privateStandalone, proxyAll),
			faulted: proxiedNode,
			hold:    time.Second,
			detect:  wentUnhealthy,
			fault:   blackhole,
			heal:    forward,
		},
		// Issue 10 item 3, the long partition, three times D at least,
		// with go-redis's default timeouts: with 200 ms heartbeats (D =
		// 650 ms), and with every default (D = 3.25 s). Either all of node
		// D's connections break, or only its bus's (a half-open
		// subscription connection; its L2 still works, so its L1 keeps
		// filling).
		longPartition("partition-long/hb200/standalone", redisDefaults, viaProxy(sharedStandalone, proxyAll)),
		longPartition("partition-long/hb200/cluster", redisDefaults, viaProxy(sharedCluster, proxyAll)),
		longPartition("partition-long/defaults/standalone", defaults, viaProxy(sharedStandalone, proxyAll)),
		longPartition("partition-long/defaults/cluster", defaults, viaProxy(sharedCluster, proxyAll)),
		longPartition("bus-partition-long/hb200/standalone", redisDefaults, viaProxy(sharedStandalone, proxyBus)),
		longPartition("bus-partition-long/hb200/cluster", redisDefaults, viaProxy(sharedCluster, proxyBus)),
		longPartition("bus-partition-long/defaults/standalone", defaults, viaProxy(sharedStandalone, proxyBus)),
		longPartition("bus-partition-long/defaults/cluster", defaults, viaProxy(sharedCluster, proxyBus)),
		{
			// Node D's traffic (L2 and bus) is delayed by 500 ms, five lag
			// limits, for a second; nothing is lost.
			name:    "delay",
			timing:  fast,
			setup:   viaProxy(privateStandalone, proxyAll),
			faulted: proxiedNode,
			hold:    time.Second,
			detect:  wentUnhealthy,
			fault: func(t *testing.T, r *rig) {
				r.proxy.setDelay(500 * time.Millisecond)
			},
			heal: func(t *testing.T, r *rig) { r.proxy.setDelay(0) },
		},
		{
			// Issue 10 item 4: node D's subscription lags more and more, up
			// to 1.5 s, for three seconds; nothing is lost (go-redis's
			// default timeouts, longer than the lag). Its L2 is not
			// delayed, so it keeps filling its L1.
			name:    "lagging-subscriber",
			timing:  timing{heartbeat: fast.heartbeat, before: time.Second, after: 2 * time.Second},
			setup:   viaProxy(privateStandalone, proxyBus),
			faulted: proxiedNode,
			hold:    3 * time.Second,
			detect:  wentUnhealthy,
			fault: func(t *testing.T, r *rig) {
				r.proxy.ramp(1500*time.Millisecond, 2*time.Second)
			},
			heal: func(t *testing.T, r *rig) { r.proxy.setDelay(0) },
		},
		{
			// The Redis server is frozen (SIGSTOP) for a second: every
			// node's L2 calls and bus hang.
			name:    "frozen-primary",
			timing:  fast,
			setup:   privateServer,
			faulted: allNodes,
			hold:    time.Second,
			detect:  wentUnhealthy,
			fault:   func(t *testing.T, r *rig) { r.srv.Pause(t) },
			heal:    func(t *testing.T, r *rig) { r.srv.Resume(t) },
		},
		{
			// CLUSTER FAILOVER on the replica of a private one-primary
			// Cluster moves every slot, and the shard channels'
			// subscriptions with them.
			name:    "cluster-failover",
			timing:  fast,
			setup:   privateCluster,
			faulted: allNodes,
			detect:  resubscribed,
			fault: func(t *testing.T, r *rig) {
				c := redis.NewClient(&redis.Options{Addr: r.cluster.Replicas[0].Addr()})
				defer c.Close()
				if err := c.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
					t.Errorf("CLUSTER FAILOVER: %v", err)
				}
			},
		},
	}
}

// TestStalenessUnderFaults runs every scenario; select one with
// -run 'TestStalenessUnderFaults/partition-long'.
func TestStalenessUnderFaults(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t)
		})
	}
}

func blackhole(t *testing.T, r *rig) { r.proxy.setMode(tcpproxy.Blackhole) }
func forward(t *testing.T, r *rig)   { r.proxy.setMode(tcpproxy.Forward) }

// resubscribed: the bus renewed its subscriptions (and flushed).
var resubscribed = detection{name: "resubscribed", count: func(s invalidation.Stats) uint64 { return s.Flushes.Resubscribe }}

// wentUnhealthy: the bus turned unhealthy (and flushed, and kept flushing
// while it lasted).
var wentUnhealthy = detection{name: "unhealthy", count: func(s invalidation.Stats) uint64 { return s.Unhealthy }, keepsFlushing: true}
