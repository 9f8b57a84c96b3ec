package invalidation_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// hookedRemote calls after the L2 write of a Set or the swap of a refresh,
// before the node goes on to fill its L1.
type hookedRemote struct {
	tiered.Remote
	afterSet  func()
	beforeCAS func(key string)
	afterCAS  func(key string)
	afterCAD  func(key string)
}

func (r *hookedRemote) Set(ctx context.Context, key string, e tiered.RemoteEntry) error {
	err := r.Remote.Set(ctx, key, e)
	if f := r.afterSet; f != nil && err == nil {
		f()
	}
	return err
}

func (r *hookedRemote) CompareAndSwap(ctx context.Context, key string, version uint64, e tiered.RemoteEntry) (bool, error) {
	if f := r.beforeCAS; f != nil {
		f(key)
	}
	ok, err := r.Remote.CompareAndSwap(ctx, key, version, e)
	if f := r.afterCAS; f != nil && ok && err == nil {
		f(key)
	}
	return ok, err
}

func (r *hookedRemote) CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error) {
	ok, err := r.Remote.CompareAndDelete(ctx, key, version)
	if f := r.afterCAD; f != nil {
		f(key)
	}
	return ok, err
}

// waitFor returns a function that waits until ch yields key.
func waitFor(t *testing.T, ctx context.Context, ch <-chan string, key, what string) func() {
	return func() {
		t.Helper()
		for k := ""; k != key; {
			select {
			case k = <-ch:
			case <-ctx.Done():
				t.Fatalf("%s never arrived", what)
			}
		}
	}
}

// TestConcurrentSetsOverRedis is issue 10 item 1 over the real bus: A's L2
// write lands first, B's Set and its invalidation reach A next, and A's L1
// fill comes last. A must not keep its value in L1 while L2 holds B's.
func TestConcurrentSetsOverRedis(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			ctx := ctxT(t)
			hooks := make([]*hookedRemote, 2)
			nodes := newNodes(t, topo, 2, redistest.Name(t), nodeConfig{
				wrapRemote: func(i int, r tiered.Remote) tiered.Remote {
					hooks[i] = &hookedRemote{Remote: r}
					return hooks[i]
				},
			})
			a, b := nodes[0], nodes[1]
			onA := waitFor(t, ctx, a.l1.watchInvalidations(), "k", "B's invalidation at A")
			var once sync.Once
			hooks[0].afterSet = func() {
				once.Do(func() {
					if err := b.cache.Set(ctx, "k", "B"); err != nil {
						t.Error(err)
					}
					onA()
				})
			}
			if err := a.cache.Set(ctx, "k", "A"); err != nil {
				t.Fatal(err)
			}
			if v, ok := a.cached("k"); ok {
				t.Fatalf("A's L1 holds %q after B's later Set; L2 holds B", v)
			}
			for _, n := range nodes {
				if v, ok, err := n.cache.Get(ctx, "k"); err != nil || !ok || v != "B" {
					t.Errorf("%s reads %q, %v, %v; want B", n.name, v, ok, err)
				}
			}
		})
	}
}

// TestRefreshRacingDeleteOverRedis is issue 10 item 2 over the real bus: a
// Delete on B lands between A's early-refresh swap and A's L1 fill.
func TestRefreshRacingDeleteOverRedis(t *testing.T) {
	ctx := ctxT(t)
	hooks := make([]*hookedRemote, 2)
	// A huge beta and a 20 ms first load: nearly every L2 hit on A starts a
	// refresh, and the first value's L1 copy ends at once, so every read
	// reaches L2; the refresh's own load is instant, so its L1 copy lives.
	nodes := newNodes(t, topologies()[0], 2, redistest.Name(t), nodeConfig{
		cacheOpts: []tiered.Option{tiered.WithJitter(0), tiered.WithEarlyRefresh(100_000)},
		wrapRemote: func(i int, r tiered.Remote) tiered.Remote {
			hooks[i] = &hookedRemote{Remote: r}
			return hooks[i]
		},
	})
	a, b := nodes[0], nodes[1]
	var loads atomic.Int64
	load := func(ctx context.Context, key string) (string, error) {
		switch loads.Add(1) {
		case 1:
			time.Sleep(20 * time.Millisecond) // the first query's duration, for XFetch
			return "v1", nil
		case 2:
			return "refreshed", nil
		}
		return "reloaded", nil
	}
	if v, err := a.cache.GetOrLoad(ctx, "k", load); err != nil || v != "v1" {
		t.Fatalf("first load = %q, %v", v, err)
	}
	// From here on, the only swap of the value key is the refresh's. It
	// waits until the reads below have stopped, then B deletes the key
	// and A hears it, then A goes on to its L1 fill.
	invalidatedA := a.l1.watchInvalidations()
	started := make(chan struct{})
	proceed := make(chan struct{})
	done := make(chan struct{})
	var deleted atomic.Bool
	hooks[0].beforeCAS = func(key string) {
		if !strings.Contains(key, "\x00") {
			close(started)
			<-proceed
		}
	}
	hooks[0].afterCAS = func(key string) {
		if strings.Contains(key, "\x00") {
			return
		}
		if err := b.cache.Delete(ctx, "k"); err != nil {
			t.Error(err)
		}
		for k := ""; k != "k"; {
			select {
			case k = <-invalidatedA:
			case <-ctx.Done():
				t.Error("B's invalidation never reached A")
				return
			}
		}
		deleted.Store(true)
	}
	hooks[0].afterCAD = func(key string) {
		if strings.Contains(key, "\x00refresh:") && deleted.Load() {
			close(done)
		}
	}
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("no early refresh reached its swap in 200 L2 hits")
		}
		if v, err := a.cache.GetOrLoad(ctx, "k", load); err != nil || v != "v1" {
			t.Fatalf("read %d = %q, %v; want v1", i, v, err)
		}
		select {
		case <-started:
		default:
			continue
		}
		break
	}
	close(proceed)
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the refresh never finished")
	}
	if v, ok := a.cached("k"); ok {
		t.Fatalf("A's L1 holds %q after B's Delete emptied L2", v)
	}
	if v, ok, err := a.cache.Get(ctx, "k"); err != nil || ok {
		t.Fatalf("A reads %q, %v, %v; want a miss", v, ok, err)
	}
}

// TestTwoCachesOfOneNameOnOneBus (issue 10 item 5): two caches of one name
// sharing a bus invalidate each other; the writer keeps its own copy.
func TestTwoCachesOfOneNameOnOneBus(t *testing.T) {
	ctx := ctxT(t)
	nodes := newNodes(t, topologies()[0], 1, redistest.Name(t), nodeConfig{})
	a := nodes[0]
	second := newCacheOn(t, a, a.cache.Name())
	if err := a.cache.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := second.cache.Get(ctx, "k"); err != nil || !ok || v != "old" {
		t.Fatalf("second cache reads %q, %v, %v", v, ok, err)
	}
	if err := a.cache.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	if v, ok := second.cached("k"); ok {
		t.Fatalf("the second cache still holds %q in L1 after the first one's Set", v)
	}
	if v, ok := a.cached("k"); !ok || v != "new" {
		t.Fatalf("the writer's L1 holds %q, %v; want new", v, ok)
	}
}
