package deploy_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// Bounds of recovery after SENTINEL FAILOVER, from its start. The sentinels
// report the new primary after about 1.2 s (one INFO period to see the
// promotion, then hello messages). The old primary stays an isolated
// primary until the sentinels turn it into a replica about 10 s later: until
// then a subscription left on it hears nothing, and the bus must find that
// out itself (its own announcements stop coming back) and resubscribe.
const (
	sentinelWriteBound = 10 * time.Second
	sentinelBusBound   = 10 * time.Second
)

// failoverOptions are the options of every failover client of these tests:
// short timeouts, so that a connection to the old primary is given up soon.
func failoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
	}
}

// TestSentinel: two nodes on redis.NewFailoverClient (a primary, a replica,
// three sentinels) read, write, take leases and invalidate each other; then
// SENTINEL FAILOVER: writes land on the new primary and invalidations reach
// the other node again, each within its bound.
func TestSentinel(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := redistest.NewSentinel(t)
	setup := newSetup(t)
	a := setup.node(t, s.Client(t, failoverOptions()))
	b := setup.node(t, s.Client(t, failoverOptions()))
	exercise(t, a, b)

	// B holds k3 in its L1, for a minute.
	l := &counter{value: "v1"}
	if v, err := b.cache.GetOrLoad(ctx, "k3", l.load); err != nil || v != "k3=v1" {
		t.Fatalf("B: GetOrLoad(k3) = %q, %v", v, err)
	}

	start := time.Now()
	old := s.Failover(t)
	primary := s.WaitFailover(t, old, 20*time.Second)
	reported := time.Since(start)

	// An L2-only cache reading the new primary directly: it sees what
	// really landed there.
	direct := redis.NewClient(&redis.Options{Addr: primary})
	t.Cleanup(func() { _ = direct.Close() })
	probe, err := tiered.New[string](setup.name, nil, mustRemote(t, direct))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = probe.Close() })

	// Writes recover: a Set through A's failover client returns and its
	// value is on the new primary.
	var writes int
	eventually(t, sentinelWriteBound, "a write through the failover client to land on the new primary", func() bool {
		writes++
		v := "k3=w" + key(writes)
		if err := a.cache.Set(ctx, "k3", v); err != nil {
			return false
		}
		got, ok, err := probe.Get(ctx, "k3")
		return err == nil && ok && got == v
	})
	written := time.Since(start)
	if written > sentinelWriteBound {
		t.Fatalf("writes recovered %v after SENTINEL FAILOVER, bound %v", written, sentinelWriteBound)
	}

	// Invalidations arrive again: a Set by A reaches B's L1 through a
	// message (not only a flush), within the bound.
	var arrived time.Duration
	eventually(t, sentinelBusBound, "an invalidation from A to reach B after the failover", func() bool {
		before := b.g.Bus().Stats().KeysInvalidated
		writes++
		v := "k3=w" + key(writes)
		if err := a.cache.Set(ctx, "k3", v); err != nil {
			return false
		}
		// Four heartbeat intervals: ample for a message on a busy machine,
		// short of the old primary becoming a replica (which would bring
		// messages back even to a bus that never resubscribed).
		deadline := time.Now().Add(4 * heartbeat)
		for time.Now().Before(deadline) {
			got, ok, err := b.cache.Get(ctx, "k3")
			if err == nil && ok && got == v && b.g.Bus().Stats().KeysInvalidated > before {
				arrived = time.Since(start)
				return true
			}
			time.Sleep(time.Millisecond) // polling interval
		}
		return false
	})
	if arrived > sentinelBusBound {
		t.Fatalf("invalidations arrived again %v after SENTINEL FAILOVER, bound %v", arrived, sentinelBusBound)
	}
	sb := b.g.Bus().Stats()
	t.Logf("SENTINEL FAILOVER: sentinels reported the new primary after %v; writes landed on it after %v (%d tries); "+
		"invalidations arrived again after %v (B's bus: %d resubscribes, %d unhealthy periods, flushes %+v)",
		reported, written, writes, arrived, sb.Resubscribes, sb.Unhealthy, sb.Flushes)
}
