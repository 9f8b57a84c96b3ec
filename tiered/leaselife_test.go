package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tcpproxy"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// Issue 9 observation 6 (and the old TestLeaseHolderHangs): a holder whose
// loader hangs keeps renewing its lease; a waiter whose flight would end
// before the lease resolves loads for itself instead of failing.
func TestWaiterLoadsWhenItsFlightWouldEnd(t *testing.T) {
	d := deployments[0]
	const leaseTTL = 150 * time.Millisecond
	name := redistest.Name(t)
	a := newNode[user](t, name, d.client(t), tiered.WithLeaseTTL(leaseTTL), tiered.WithRemoteTimeout(100*time.Millisecond))
	b := newNode[user](t, name, d.client(t), tiered.WithLeaseTTL(leaseTTL), tiered.WithRemoteTimeout(100*time.Millisecond),
		tiered.WithLoadTimeout(time.Second))
	started, hang := make(chan struct{}), make(chan struct{})
	defer close(hang)
	go a.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
		close(started)
		<-hang
		return user{ID: key, Name: "late"}, nil
	})
	<-started
	begin := time.Now()
	u, err := b.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
		return user{ID: key, Name: "self"}, nil
	})
	if err != nil || u.Name != "self" {
		t.Fatalf("B = %+v, %v; want its own load, no error", u, err)
	}
	took := time.Since(begin)
	if took < 2*leaseTTL || took > 900*time.Millisecond {
		t.Fatalf("B loaded after %v; want after half its 1 s load timeout (A's lease of TTL %v is renewed)", took, leaseTTL)
	}
	if st := b.Stats(); st.DegradedLoads != 1 || st.LeaseTakeovers != 0 {
		t.Fatalf("B degraded loads %d, takeovers %d; want 1 and 0 (A is alive and renewing)", st.DegradedLoads, st.LeaseTakeovers)
	}
	if a.Stats().LeaseRenewals == 0 {
		t.Fatal("A never renewed its lease")
	}
}

// A renewed lease keeps other nodes waiting for the holder's value: a load
// several times longer than LeaseTTL still runs once in the cluster.
func TestLeaseRenewedWhileLoading(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		const leaseTTL = 500 * time.Millisecond
		nodes := cluster[user](t, d, 3, tiered.WithLeaseTTL(leaseTTL), tiered.WithRemoteTimeout(150*time.Millisecond))
		var loader countingLoader
		release := make(chan struct{})
		loader.fn = func(ctx context.Context, key string) (user, error) {
			<-release
			return user{ID: key}, nil
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(nodes))
		wg.Go(func() {
			_, err := nodes[0].GetOrLoad(context.Background(), "k", loader.load)
			errs <- err
		})
		eventually(t, 5*time.Second, "node 0 never took the lease", func() bool { return nodes[0].Stats().LeasesAcquired == 1 })
		for _, n := range nodes[1:] {
			wg.Go(func() {
				_, err := n.GetOrLoad(context.Background(), "k", loader.load)
				errs <- err
			})
		}
		// Hold the load for several lease lifetimes, measured by renewals.
		eventually(t, 10*time.Second, "node 0 renewed fewer than 4 times", func() bool { return nodes[0].Stats().LeaseRenewals >= 4 })
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("a caller failed: %v", err)
			}
		}
		if c := loader.calls.Load(); c != 1 {
			t.Fatalf("loader calls = %d, want 1: the renewed lease kept the others waiting", c)
		}
	})
}

// Issue 9 observation 5: a value too large for L2 leaves a short
// "unstorable" marker; callers on other nodes load for themselves at once
// instead of waiting out the load timeout.
func TestUnstorableValueDoesNotBlockOthers(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		name := redistest.Name(t)
		var nodes []*tiered.Cache[string]
		for range 4 {
			l2, err := remote.New(rdb, remote.WithMaxValueBytes(1024))
			if err != nil {
				t.Fatal(err)
			}
			l1, err := local.New[string]()
			if err != nil {
				t.Fatal(err)
			}
			c, err := tiered.New[string](name, l1, l2, tiered.WithErrorHandler(func(context.Context, error) {}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			nodes = append(nodes, c)
		}
		big := strings.Repeat("x", 4096)
		load := func(ctx context.Context, key string) (string, error) {
			time.Sleep(50 * time.Millisecond) // the query's duration
			return big, nil
		}
		begin := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var worst time.Duration
		for _, n := range nodes {
			for range 8 {
				wg.Go(func() {
					start := time.Now()
					v, err := n.GetOrLoad(context.Background(), "big", load)
					if err != nil || v != big {
						t.Errorf("GetOrLoad = %d bytes, %v", len(v), err)
					}
					mu.Lock()
					worst = max(worst, time.Since(start))
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		t.Logf("slowest caller waited %v (before: the 10 s load timeout, then an error)", worst.Round(time.Millisecond))
		if took := time.Since(begin); took > 3*time.Second {
			t.Fatalf("callers took %v; a value that cannot be stored must not make others wait", took)
		}
	})
}

// Issue 9 observation 7: a planted lease (its own expiry past, no TTL in
// Redis) does not block the key; nor does one with a future expiry but no
// TTL.
func TestPlantedLeaseDoesNotBlock(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		name := redistest.Name(t)
		n := newNode[user](t, name, rdb)
		ctx := context.Background()
		for i, exp := range []time.Time{time.Now().Add(-time.Hour), time.Now().Add(time.Hour)} {
			key := fmt.Sprint("planted", i)
			lease := remote.Encode(nil, driver.Entry{Kind: driver.KindLease, ExpiresAt: exp, Version: 42})
			if err := rdb.Set(ctx, name+":"+key, lease, 0).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rdb.Del(context.Background(), name+":"+key) })
			begin := time.Now()
			u, err := n.GetOrLoad(ctx, key, func(ctx context.Context, key string) (user, error) { return user{ID: key}, nil })
			if err != nil || u.ID != key {
				t.Fatalf("GetOrLoad over a planted lease = %+v, %v", u, err)
			}
			if took := time.Since(begin); took > time.Second {
				t.Fatalf("GetOrLoad over a planted lease took %v", took)
			}
			// The value replaced the planted lease in L2.
			if e, err := n.l2.Get(ctx, name+":"+key); err != nil || e.Kind != driver.KindValue {
				t.Fatalf("L2 after takeover = %+v, %v; want the value", e, err)
			}
		}
	})
}

// A lease holder cut off from Redis (its connections blackholed: a
// partition or a frozen VM) stops renewing; another node takes the lease
// over within LeaseTTL plus a poll, and no caller fails, the cut-off node's
// included.
func TestBlackholedHolderIsTakenOver(t *testing.T) {
	srv := redistest.StandaloneAddr(t)
	proxy, err := tcpproxy.New(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	const leaseTTL = 600 * time.Millisecond
	name := redistest.Name(t)
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer viaProxy.Close()
	// A's lease lives leaseTTL; B, the waiter, gets a generous remote
	// timeout so that a busy machine does not turn its reads into errors.
	a := newNode[user](t, name, viaProxy, tiered.WithLeaseTTL(leaseTTL), tiered.WithRemoteTimeout(100*time.Millisecond))
	b := newNode[user](t, name, redistest.Standalone(t))
	started, cut := make(chan struct{}), make(chan struct{})
	aRes := make(chan error, 1)
	go func() {
		u, err := a.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
			close(started)
			<-cut
			return user{ID: key, Name: "a"}, nil
		})
		if err == nil && u.ID != "k" {
			err = fmt.Errorf("got %+v", u)
		}
		aRes <- err
	}()
	<-started
	proxy.SetMode(tcpproxy.Blackhole)
	cutAt := time.Now()
	u, err := b.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
		return user{ID: key, Name: "b"}, nil
	})
	took := time.Since(cutAt)
	close(cut)
	if err != nil || u.Name != "b" {
		t.Fatalf("B = %+v, %v; want B's own load under a taken-over lease", u, err)
	}
	if err := <-aRes; err != nil {
		t.Fatalf("A's caller failed: %v", err)
	}
	t.Logf("B took the lease over %v after A was cut off (lease TTL %v)", took.Round(time.Millisecond), leaseTTL)
	if limit := leaseTTL + tiered.DefaultLeasePollMax + 300*time.Millisecond; took > limit {
		t.Fatalf("takeover took %v, want within LeaseTTL plus a poll (%v)", took, limit)
	}
	if st := b.Stats(); st.LeaseTakeovers != 1 {
		t.Fatalf("B takeovers = %d, want 1", st.LeaseTakeovers)
	}
	if errors.Is(err, tiered.ErrLoadFailed) {
		t.Fatal("unreachable")
	}
}
