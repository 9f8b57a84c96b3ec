package invalidation_test

import (
	"context"
	"testing"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/internal/fillrace"
	"github.com/tiercache/tiercache/internal/redistest"
)

// hookedNodes starts two nodes whose L2 calls go through a
// fillrace.Remote each.
func hookedNodes(t *testing.T, topo topology, cfg nodeConfig) ([]*node, []*fillrace.Remote) {
	hooks := make([]*fillrace.Remote, 2)
	cfg.wrapRemote = func(i int, r driver.Remote) driver.Remote {
		hooks[i] = &fillrace.Remote{Remote: r}
		return hooks[i]
	}
	return newNodes(t, topo, 2, redistest.Name(t), cfg), hooks
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
			nodes, hooks := hookedNodes(t, topo, nodeConfig{})
			a, b := nodes[0], nodes[1]
			onA := waitFor(t, ctx, a.l1.watchInvalidations(), "k", "B's invalidation at A")
			hooks[0].OnceAfterSet(func() {
				if err := b.cache.Set(ctx, "k", "B"); err != nil {
					t.Error(err)
				}
				onA()
			})
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
	nodes, hooks := hookedNodes(t, topologies()[0], nodeConfig{cacheOpts: fillrace.RefreshOptions()})
	a, b := nodes[0], nodes[1]
	load, _ := fillrace.Loader("v1", "refreshed")
	if v, err := a.cache.GetOrLoad(ctx, "k", load); err != nil || v != "v1" {
		t.Fatalf("first load = %q, %v", v, err)
	}
	onA := waitFor(t, ctx, a.l1.watchInvalidations(), "k", "B's invalidation at A")
	fillrace.RaceRefresh(t, ctx, hooks[0], func() (string, error) { return a.cache.GetOrLoad(ctx, "k", load) }, "v1", func() {
		if err := b.cache.Delete(ctx, "k"); err != nil {
			t.Error(err)
		}
		onA()
	})
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
	a.l1.Wait() // the fill after a Set does not wait for ristretto to apply it
	if v, ok := a.cached("k"); !ok || v != "new" {
		t.Fatalf("the writer's L1 holds %q, %v; want new", v, ok)
	}
}
