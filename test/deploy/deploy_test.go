// Package deploy_test runs tiercache (the root package: ristretto L1, Redis
// L2, the invalidation bus) on each Redis deployment docs/deploying.md
// describes, every one on real redis-server processes started for
// the test: Sentinel through redis.NewFailoverClient (and a failover),
// redis.NewUniversalClient in its three shapes, TLS with certificates made
// at test time, a Cluster without sharded pub/sub (Redis 6.2, simulated on
// 7.0), and a least-privilege ACL user on a Cluster.
package deploy_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// heartbeat is the buses' heartbeat interval (and lag limit): D = 812 ms,
// short enough for a test, long enough that a busy machine running -race
// does not make the buses doubt their subscriptions over and over.
const heartbeat = 250 * time.Millisecond

// node is one service process: its own client, Group (bus) and cache.
type node struct {
	g     *tiercache.Group
	cache *tiered.Cache[string]
}

// setup describes the caches of a test: every node's cache has the same
// name and its bus the same channel prefix.
type setup struct {
	name    string
	busOpts []invalidation.Option
	opts    []tiered.Option
}

func newSetup(t *testing.T, busOpts ...invalidation.Option) setup {
	name := redistest.Name(t)
	return setup{
		name: name,
		busOpts: append([]invalidation.Option{
			invalidation.WithChannelPrefix("deploy-" + name),
			invalidation.WithHeartbeatInterval(heartbeat),
			invalidation.WithStartTimeout(10 * time.Second),
		}, busOpts...),
		opts: []tiered.Option{
			tiered.WithLocalTTL(time.Minute), // far above D: only the bus can change an L1 entry
			tiered.WithRemoteTTL(time.Minute),
			tiered.WithRemoteTimeout(2 * time.Second),
		},
	}
}

// node starts a node of s on client c; it is closed when the test ends.
func (s setup) node(t *testing.T, c tiercache.Client) *node {
	t.Helper()
	g, err := tiercache.NewGroup(c, tiercache.WithBusOptions(s.busOpts...), tiercache.WithDefaults(s.opts...))
	if err != nil {
		t.Fatalf("tiercache.NewGroup: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	cache, err := tiercache.New[string](g, s.name)
	if err != nil {
		t.Fatalf("tiercache.New: %v", err)
	}
	return &node{g: g, cache: cache}
}

// counter is a loader that counts its calls and answers "key=value".
type counter struct {
	calls atomic.Int64
	value string
}

func (l *counter) load(_ context.Context, key string) (string, error) {
	l.calls.Add(1)
	return key + "=" + l.value, nil
}

// exercise runs reads, leases, writes, deletes and the bus on two nodes of
// one deployment, failing the test at the first thing that does not work.
func exercise(t *testing.T, a, b *node) {
	t.Helper()
	ctx := ctxT(t)
	l := &counter{value: "v1"}

	// Reads: A loads and fills L2; B finds the value in L2; A in its L1.
	if v, err := a.cache.GetOrLoad(ctx, "k1", l.load); err != nil || v != "k1=v1" {
		t.Fatalf("A: GetOrLoad(k1) = %q, %v", v, err)
	}
	if v, err := b.cache.GetOrLoad(ctx, "k1", l.load); err != nil || v != "k1=v1" {
		t.Fatalf("B: GetOrLoad(k1) = %q, %v", v, err)
	}
	if n, hits := l.calls.Load(), b.cache.Stats().L2Hits; n != 1 || hits != 1 {
		t.Fatalf("the loader ran %d times for one key on two nodes and B had %d L2 hits, want 1 and 1 (L2 shared)", n, hits)
	}
	// A bus may flush its caches at any time (it does when it doubts its
	// subscription), so an L1 hit is waited for, not expected at once.
	eventually(t, 5*time.Second, "A to answer from L1", func() bool {
		before := a.cache.Stats().L1Hits
		v, err := a.cache.GetOrLoad(ctx, "k1", l.load)
		if err != nil || v != "k1=v1" {
			t.Fatalf("A: GetOrLoad(k1) again = %q, %v", v, err)
		}
		return a.cache.Stats().L1Hits > before
	})
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("the loader ran %d times for one key on two nodes, want 1 (L2 shared)", n)
	}

	// Leases: A loads a cold key and holds its lease; B asks for the same
	// key meanwhile, waits on A's lease, and gets A's value without loading.
	entered, release := make(chan struct{}), make(chan struct{})
	var loads atomic.Int64
	slow := func(_ context.Context, key string) (string, error) {
		if loads.Add(1) == 1 {
			close(entered)
			<-release
		}
		return key + "=leased", nil
	}
	var wg sync.WaitGroup
	var va string
	var errA error
	wg.Go(func() { va, errA = a.cache.GetOrLoad(ctx, "k2", slow) })
	<-entered
	var vb string
	var errB error
	waitsBefore := b.cache.Stats().LeaseWaits
	wg.Go(func() { vb, errB = b.cache.GetOrLoad(ctx, "k2", slow) })
	eventually(t, 10*time.Second, "B to wait on A's lease", func() bool { return b.cache.Stats().LeaseWaits > waitsBefore })
	close(release)
	wg.Wait()
	if errA != nil || errB != nil || va != "k2=leased" || vb != "k2=leased" {
		t.Fatalf("GetOrLoad(k2) under a lease: A %q, %v; B %q, %v", va, errA, vb, errB)
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("the loader ran %d times under a lease, want 1", n)
	}

	// Writes and the bus: B holds k1 in L1 (for a minute); A's Set, then
	// A's Delete, reach it as messages. A bus also flushes its caches when
	// it doubts its subscription, which would hide a bus that delivers
	// nothing; so each write counts only once B's bus has received keys
	// after it, and is tried again (up to 10 s) if B changed by a flush
	// alone.
	version := 1
	untilMessage := func(what string, write func() error, seen func() bool) {
		t.Helper()
		eventually(t, 10*time.Second, what+" to reach B as a message", func() bool {
			if _, err := b.cache.GetOrLoad(ctx, "k1", l.load); err != nil { // B's L1 holds k1
				t.Fatalf("B: GetOrLoad(k1): %v", err)
			}
			before := b.g.Bus().Stats().KeysInvalidated
			if err := write(); err != nil {
				t.Fatalf("A: %s: %v", what, err)
			}
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				if seen() && b.g.Bus().Stats().KeysInvalidated > before {
					return true
				}
				time.Sleep(time.Millisecond) // polling interval
			}
			return false
		})
	}
	untilMessage("A's Set", func() error {
		version++
		return a.cache.Set(ctx, "k1", fmt.Sprint("k1=v", version))
	}, func() bool {
		v, ok, err := b.cache.Get(ctx, "k1")
		return err == nil && ok && v == fmt.Sprint("k1=v", version)
	})
	untilMessage("A's Delete", func() error { return a.cache.Delete(ctx, "k1") }, func() bool {
		_, ok, err := b.cache.Get(ctx, "k1")
		return err == nil && !ok
	})
	for _, n := range []*node{a, b} {
		if st := n.cache.Stats(); st.L2Errors != 0 || st.HandledErrors != 0 {
			t.Fatalf("L2 errors: %+v", st)
		}
	}
}

// eventually polls cond until it holds, failing the test after timeout, and
// returns how long it took.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
	return time.Since(start)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// key returns the i-th key of a workload.
func key(i int) string { return fmt.Sprint("k", i) }

// mustRemote returns a remote.Store on c.
func mustRemote(t testing.TB, c remote.Client) *remote.Store {
	t.Helper()
	s, err := remote.New(c)
	if err != nil {
		t.Fatalf("remote.New: %v", err)
	}
	return s
}
