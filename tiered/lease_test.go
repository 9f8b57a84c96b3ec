package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// cluster is several cache nodes sharing one name, each with its own Redis
// client and L1, as separate service replicas would.
func cluster[V any](t *testing.T, d testRedis, nodes int, opts ...tiered.Option) []*node[V] {
	t.Helper()
	name := redistest.Name(t)
	out := make([]*node[V], nodes)
	for i := range out {
		out[i] = newNode[V](t, name, d.client(t), opts...)
	}
	return out
}

func eachDeploymentD(t *testing.T, f func(t *testing.T, d testRedis)) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) { f(t, d) })
	}
}

// TestStampedeOneLoadPerCluster: 8 nodes x 64 goroutines ask one cold key at
// the same instant; the loader runs once in the whole cluster.
func TestStampedeOneLoadPerCluster(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		nodes := cluster[user](t, d, 8)
		var calls atomic.Int64
		load := func(ctx context.Context, key string) (user, error) {
			calls.Add(1)
			time.Sleep(20 * time.Millisecond) // the query's duration, not synchronisation
			return user{ID: key}, nil
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var bad atomic.Int64
		for _, n := range nodes {
			for range 64 {
				wg.Go(func() {
					<-start
					if u, err := n.GetOrLoad(context.Background(), "hot", load); err != nil || u.ID != "hot" {
						bad.Add(1)
					}
				})
			}
		}
		close(start)
		wg.Wait()
		if c := calls.Load(); c != 1 {
			t.Fatalf("loader calls = %d, want 1 for 8 nodes x 64 callers", c)
		}
		if b := bad.Load(); b != 0 {
			t.Fatalf("%d callers did not get the value", b)
		}
	})
}

func TestStampedeManyKeys(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		// 1600 goroutines on a busy 2-core machine under -race can keep an
		// L2 call or a lease wait going longer than the default deadlines,
		// a lease can expire while its holder is descheduled, and a timed-out
		// call, wait or lease rightly becomes a second load on
		// that node. This test is about the lease protocol, so calls and
		// waits get as long as they need.
		nodes := cluster[user](t, d, 8, tiered.WithRemoteTimeout(0), tiered.WithCircuitBreaker(0, 0), tiered.WithLoadTimeout(2*time.Minute), tiered.WithLeaseTTL(time.Minute))
		var mu sync.Mutex
		calls := map[string]int{}
		load := func(ctx context.Context, key string) (user, error) {
			mu.Lock()
			calls[key]++
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // the query's duration
			return user{ID: key}, nil
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var bad atomic.Int64
		for _, n := range nodes {
			for k := range 100 {
				key := fmt.Sprint("k", k)
				for range 2 {
					wg.Go(func() {
						<-start
						if u, err := n.GetOrLoad(context.Background(), key, load); err != nil || u.ID != key {
							bad.Add(1)
						}
					})
				}
			}
		}
		close(start)
		wg.Wait()
		if len(calls) != 100 {
			t.Fatalf("%d keys loaded, want 100", len(calls))
		}
		for k, c := range calls {
			if c != 1 {
				t.Errorf("key %s loaded %d times, want 1", k, c)
			}
		}
		if b := bad.Load(); b != 0 {
			t.Fatalf("%d callers did not get their value", b)
		}
	})
}

// TestNoStaleFill: a load that read the old row before a write must not
// store it anywhere after the write.
func TestNoStaleFill(t *testing.T) {
	writes := map[string]func(ctx context.Context, n *node[user]) error{
		"delete": func(ctx context.Context, n *node[user]) error { return n.Delete(ctx, "row") },
		"set":    func(ctx context.Context, n *node[user]) error { return n.Set(ctx, "row", user{ID: "row", Name: "new"}) },
	}
	for wname, write := range writes {
		t.Run(wname, func(t *testing.T) {
			eachDeploymentD(t, func(t *testing.T, d testRedis) {
				ctx := context.Background()
				nodes := cluster[user](t, d, 3)
				a, b, c := nodes[0], nodes[1], nodes[2]
				var db atomic.Value
				db.Store("old")
				readOld, release := make(chan struct{}), make(chan struct{})
				slow := func(ctx context.Context, key string) (user, error) {
					name := db.Load().(string)
					close(readOld)
					<-release
					return user{ID: key, Name: name}, nil
				}
				fresh := func(ctx context.Context, key string) (user, error) {
					return user{ID: key, Name: db.Load().(string)}, nil
				}
				got := make(chan user, 1)
				go func() {
					u, _ := a.GetOrLoad(ctx, "row", slow)
					got <- u
				}()
				<-readOld
				db.Store("new")
				if err := write(ctx, b); err != nil {
					t.Fatal(err)
				}
				close(release)
				if u := <-got; u.Name != "old" {
					t.Fatalf("A's caller got %q, want the old row it read", u.Name)
				}
				if st := a.Stats(); st.FillsRejected != 1 {
					t.Fatalf("A's rejected fills = %d, want 1", st.FillsRejected)
				}
				for i, n := range nodes {
					if v, _, ok := n.l1.Get("row"); ok && v.Name == "old" {
						t.Fatalf("node %d L1 holds the stale row", i)
					}
				}
				if e, _ := a.l2.Get(ctx, a.Name()+":row"); e.Kind == driver.KindValue && string(e.Payload) != `{"id":"row","name":"new"}` {
					t.Fatalf("L2 holds %s, want nothing or the new row", e.Payload)
				}
				for i, n := range []*node[user]{a, c} {
					u, err := n.GetOrLoad(ctx, "row", fresh)
					if err != nil || u.Name != "new" {
						t.Fatalf("node %d next read = %+v, %v; want the new row", i, u, err)
					}
				}
			})
		})
	}
}

// TestLeaseHolderClosedMidLoad: the node holding the lease closes; a waiter
// on another node takes the load over at once.
func TestLeaseHolderClosedMidLoad(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		nodes := cluster[user](t, d, 2, tiered.WithLeaseTTL(time.Minute))
		a, b := nodes[0], nodes[1]
		started := make(chan struct{})
		go a.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
			close(started)
			<-ctx.Done() // the node dies: only Close ends this load
			return user{}, ctx.Err()
		})
		<-started
		res := make(chan error, 1)
		var bCalls atomic.Int64
		go func() {
			u, err := b.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
				bCalls.Add(1)
				return user{ID: key}, nil
			})
			if err == nil && u.ID != "k" {
				err = fmt.Errorf("got %+v", u)
			}
			res <- err
		}()
		eventually(t, 5*time.Second, "B never started waiting on A's lease", func() bool { return b.Stats().LeaseWaits == 1 })
		begin := time.Now()
		a.Close()
		if err := <-res; err != nil {
			t.Fatalf("B: %v", err)
		}
		if took := time.Since(begin); took > 5*time.Second {
			t.Fatalf("takeover took %v despite a released lease", took)
		}
		if bCalls.Load() != 1 || b.Stats().LeaseTakeovers != 1 {
			t.Fatalf("B loader calls %d, takeovers %d; want 1 and 1", bCalls.Load(), b.Stats().LeaseTakeovers)
		}
	})
}

// TestLoaderErrorReachesEveryWaiter: every caller on every node gets an
// error, nothing is cached, the next call loads again.
func TestLoaderErrorReachesEveryWaiter(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		nodes := cluster[user](t, d, 4)
		boom := errors.New("db down")
		var calls atomic.Int64
		release := make(chan struct{})
		failing := func(ctx context.Context, key string) (user, error) {
			calls.Add(1)
			<-release
			return user{}, boom
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4*8)
		for _, n := range nodes {
			for range 8 {
				wg.Go(func() {
					_, err := n.GetOrLoad(context.Background(), "k", failing)
					errs <- err
				})
			}
		}
		eventually(t, 5*time.Second, "callers never queued on the lease", func() bool {
			var waits uint64
			for _, n := range nodes {
				waits += n.Stats().LeaseWaits
			}
			return calls.Load() == 1 && waits == 3
		})
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, boom) && !errors.Is(err, tiered.ErrLoadFailed) {
				t.Errorf("caller got %v, want the loader's error", err)
			}
		}
		if c := calls.Load(); c != 1 {
			t.Fatalf("loader calls = %d, want 1", c)
		}
		var next atomic.Int64
		for i, n := range nodes {
			u, err := n.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
				next.Add(1)
				return user{ID: key}, nil
			})
			if err != nil || u.ID != "k" {
				t.Fatalf("node %d after the failure: %+v, %v", i, u, err)
			}
		}
		if c := next.Load(); c != 1 {
			t.Fatalf("loads after the failure = %d, want 1", c)
		}
	})
}

func TestWaiterRespectsItsDeadline(t *testing.T) {
	d := deployments[0]
	nodes := cluster[user](t, d, 2)
	a, b := nodes[0], nodes[1]
	started, hang := make(chan struct{}), make(chan struct{})
	defer close(hang)
	go a.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
		close(started)
		<-hang
		return user{}, nil
	})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := b.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (user, error) {
		t.Error("B loaded while A held the lease")
		return user{}, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("B = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Fatalf("B returned after %v, long past its 100ms deadline", took)
	}
}

// TestGetOrLoadManyWaitsForOtherNodes: keys another node is loading are
// awaited, not loaded twice.
func TestGetOrLoadManyWaitsForOtherNodes(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		nodes := cluster[user](t, d, 2)
		a, b := nodes[0], nodes[1]
		started, release := make(chan struct{}), make(chan struct{})
		go a.GetOrLoad(context.Background(), "2", func(ctx context.Context, key string) (user, error) {
			close(started)
			<-release
			return user{ID: key, Name: "from A"}, nil
		})
		<-started
		loader := &batchLoader{}
		done := make(chan map[string]user, 1)
		go func() {
			m, err := b.GetOrLoadMany(context.Background(), []string{"1", "2", "3"}, loader.load)
			if err != nil {
				t.Error(err)
			}
			done <- m
		}()
		eventually(t, 5*time.Second, "B never waited on A's lease", func() bool { return b.Stats().LeaseWaits == 1 })
		close(release)
		m := <-done
		if m["2"].Name != "from A" || m["1"].ID != "1" || m["3"].ID != "3" {
			t.Fatalf("results = %+v", m)
		}
		if keys := loader.loadedKeys(); !slices.Equal(keys, []string{"1", "3"}) {
			t.Fatalf("B loaded %v, want [1 3]", keys)
		}
	})
}

// TestEarlyRefresh: under steady reads on several nodes, a key is refreshed
// before it expires, once per refresh across nodes, and no read misses.
func TestEarlyRefresh(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		const ttl = 600 * time.Millisecond
		// beta 4 with a 20 ms load: refreshes fire in the last ~80-240 ms.
		nodes := cluster[user](t, d, 3, tiered.WithRemoteTTL(ttl), tiered.WithJitter(0),
			tiered.WithLocalTTL(50*time.Millisecond), tiered.WithEarlyRefresh(4))
		var calls atomic.Int64
		load := func(ctx context.Context, key string) (user, error) {
			n := calls.Add(1)
			time.Sleep(20 * time.Millisecond) // the query's duration
			return user{ID: key, Name: fmt.Sprint("v", n)}, nil
		}
		ctx := context.Background()
		if _, err := nodes[0].GetOrLoad(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
		// Read steadily from every node for three TTLs.
		stop := time.Now().Add(3 * ttl)
		var wg sync.WaitGroup
		var failures atomic.Int64
		for _, n := range nodes {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if _, err := n.GetOrLoad(ctx, "k", load); err != nil {
						failures.Add(1)
					}
					time.Sleep(time.Millisecond) // read rate, not synchronisation
				}
			})
		}
		wg.Wait()
		var started, misses uint64
		for _, n := range nodes {
			st := n.Stats()
			started += st.RefreshesStarted
			misses += st.L2Misses
		}
		if failures.Load() != 0 {
			t.Fatalf("%d reads failed", failures.Load())
		}
		if started < 2 {
			t.Fatalf("refreshes started = %d over three TTLs, want at least 2", started)
		}
		if c := uint64(calls.Load()); c != 1+started {
			t.Fatalf("loader calls = %d, want 1 + one per refresh (%d)", c, started)
		}
		if misses != 1 {
			t.Fatalf("L2 misses = %d, want only the first load: a read hit an expired key", misses)
		}
	})
}
