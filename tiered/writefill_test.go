package tiered_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/fillrace"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// hub is an in-memory invalidation bus joining several nodes of one test:
// a publish reaches the subscribers of every other node synchronously,
// before Publish returns (an instant, lossless bus).
type hub struct {
	mu   sync.Mutex
	subs map[*hubNode][]hubSub
}

type hubSub struct {
	namespace  string
	invalidate func([]string)
}

// hubNode is one node's driver.Bus on a hub.
type hubNode struct{ h *hub }

func (h *hub) node() *hubNode {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = make(map[*hubNode][]hubSub)
	}
	n := &hubNode{h: h}
	h.subs[n] = nil
	return n
}

func (n *hubNode) Publish(_ context.Context, namespace string, keys []string) error {
	n.h.mu.Lock()
	var calls []func([]string)
	for other, subs := range n.h.subs {
		if other == n {
			continue
		}
		for _, s := range subs {
			if s.namespace == namespace {
				calls = append(calls, s.invalidate)
			}
		}
	}
	n.h.mu.Unlock()
	for _, f := range calls {
		f(keys)
	}
	return nil
}

func (n *hubNode) Subscribe(namespace string, invalidate func([]string), _ func()) (driver.Subscription, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	n.h.subs[n] = append(n.h.subs[n], hubSub{namespace, invalidate})
	return busSubscription{bus: n, namespace: namespace}, nil
}

var _ driver.Bus = (*hubNode)(nil)

// hookedNode is a node whose L2 calls go through a fillrace.Remote.
func hookedNode(t *testing.T, name string, store *remote.Store, bus driver.Bus, opts ...tiered.Option) (*tiered.Cache[string], *local.Store[string], *fillrace.Remote) {
	t.Helper()
	l1, err := local.New[string]()
	if err != nil {
		t.Fatal(err)
	}
	r := &fillrace.Remote{Remote: store}
	all := append([]tiered.Option{tiered.WithRemoteTimeout(5 * time.Second), tiered.WithInvalidation(bus)}, opts...)
	c, err := tiered.New[string](name, l1, r, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, l1, r
}

// TestConcurrentSetsAcrossNodes is issue 10 item 1 with the interleaving
// forced: A's L2 write lands, then B's whole Set (its L2 write and its
// invalidation reaching A), then A's L1 fill. A must not keep "A" in L1
// while L2 holds "B".
func TestConcurrentSetsAcrossNodes(t *testing.T) {
	rdb := redistest.Standalone(t)
	store, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	name := redistest.Name(t)
	var h hub
	a, aL1, aRemote := hookedNode(t, name, store, h.node())
	b, _, _ := hookedNode(t, name, store, h.node())
	ctx := context.Background()
	aRemote.OnceAfterSet(func() {
		if err := b.Set(ctx, "k", "B"); err != nil {
			t.Error(err)
		}
	})
	if err := a.Set(ctx, "k", "A"); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := aL1.Get("k"); ok {
		t.Fatalf("A's L1 holds %q after B's later Set; L2 holds B", v)
	}
	for name, c := range map[string]*tiered.Cache[string]{"A": a, "B": b} {
		if v, ok, err := c.Get(ctx, "k"); err != nil || !ok || v != "B" {
			t.Errorf("%s reads %q, %v, %v; want B", name, v, ok, err)
		}
	}

	// Without interference the writer still reads its own write from L1.
	aRemote.AfterSet = nil
	if err := a.Set(ctx, "k2", "A2"); err != nil {
		t.Fatal(err)
	}
	aL1.Wait() // the fill after a Set does not wait for ristretto to apply it
	if v, _, ok := aL1.Get("k2"); !ok || v != "A2" {
		t.Fatalf("A's L1 after its own Set = %q, %v; want A2", v, ok)
	}
}

// TestSetRacingLocalDelete: a Delete on the same node that lands between a
// Set's L2 write and its L1 fill wins too.
func TestSetRacingLocalDelete(t *testing.T) {
	rdb := redistest.Standalone(t)
	store, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	var h hub
	a, aL1, aRemote := hookedNode(t, redistest.Name(t), store, h.node())
	ctx := context.Background()
	aRemote.AfterSet = func(string) {
		if err := a.Delete(ctx, "k"); err != nil {
			t.Error(err)
		}
	}
	if err := a.Set(ctx, "k", "A"); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := aL1.Get("k"); ok {
		t.Fatalf("L1 holds %q after a Delete that followed the L2 write", v)
	}
}

// TestRefreshRacingDelete is issue 10 item 2 with the interleaving forced:
// a Delete on another node lands between an early refresh's
// compare-and-swap and its L1 fill. The refreshing node must not keep the
// refreshed value in L1 while L2 is empty.
func TestRefreshRacingDelete(t *testing.T) {
	rdb := redistest.Standalone(t)
	store, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	name := redistest.Name(t)
	var h hub
	opts := append([]tiered.Option{tiered.WithRemoteTTL(time.Minute)}, fillrace.RefreshOptions()...)
	a, aL1, aRemote := hookedNode(t, name, store, h.node(), opts...)
	b, _, _ := hookedNode(t, name, store, h.node())
	ctx := context.Background()
	load, loads := fillrace.Loader("v1", "refreshed")
	if v, err := a.GetOrLoad(ctx, "k", load); err != nil || v != "v1" {
		t.Fatalf("first load = %q, %v", v, err)
	}
	// The hub delivers B's invalidation to A before Delete returns.
	fillrace.RaceRefresh(t, ctx, aRemote, func() (string, error) { return a.GetOrLoad(ctx, "k", load) }, "v1", func() {
		if err := b.Delete(ctx, "k"); err != nil {
			t.Error(err)
		}
	})
	if v, _, ok := aL1.Get("k"); ok {
		t.Fatalf("A's L1 holds %q after B's Delete emptied L2", v)
	}
	if v, ok, err := a.Get(ctx, "k"); err != nil || ok {
		t.Fatalf("A reads %q, %v, %v; want a miss", v, ok, err)
	}
	if got := loads.Load(); got != 2 {
		t.Fatalf("loads = %d, want 2", got)
	}
}

// TestSetManyAndCompareAndSetRacingOtherNode: the other writes that fill
// L1 after an L2 write (SetMany, CompareAndSet) lose to another node's
// write landing between the two, as Set does.
func TestSetManyAndCompareAndSetRacingOtherNode(t *testing.T) {
	rdb := redistest.Standalone(t)
	store, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	name := redistest.Name(t)
	var h hub
	a, aL1, aRemote := hookedNode(t, name, store, h.node())
	b, _, _ := hookedNode(t, name, store, h.node())
	ctx := context.Background()

	aRemote.OnceAfterSet(func() {
		if err := b.Set(ctx, "m", "B"); err != nil {
			t.Error(err)
		}
	})
	if err := a.SetMany(ctx, map[string]string{"m": "A"}); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := aL1.Get("m"); ok {
		t.Fatalf("SetMany: A's L1 holds %q after B's later Set", v)
	}

	if err := a.Set(ctx, "c", "old"); err != nil {
		t.Fatal(err)
	}
	_, version, ok, err := a.GetVersioned(ctx, "c")
	if err != nil || !ok {
		t.Fatalf("GetVersioned = %v, %v", ok, err)
	}
	aRemote.AfterCAS = func(_ string, swapped bool) {
		if swapped {
			if err := b.Delete(ctx, "c"); err != nil {
				t.Error(err)
			}
		}
	}
	if swapped, err := a.CompareAndSet(ctx, "c", version, "new"); err != nil || !swapped {
		t.Fatalf("CompareAndSet = %v, %v", swapped, err)
	}
	if v, _, ok := aL1.Get("c"); ok {
		t.Fatalf("CompareAndSet: A's L1 holds %q after B's Delete emptied L2", v)
	}
}
