package tiered_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

type hotNode struct {
	c  *tiered.Cache[string]
	l1 *local.Store[string]
}

func newHotNode(t *testing.T, rdb redis.UniversalClient, name string, opts ...tiered.Option) hotNode {
	t.Helper()
	bus, err := invalidation.New(rdb, invalidation.WithChannelPrefix(name+":bus"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	st, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	l1, err := local.New[string]()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[string](name, l1, st, append([]tiered.Option{tiered.WithInvalidation(bus), tiered.WithRemoteTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return hotNode{c: c, l1: l1}
}

// TestHotKeyRefresh: node A served "hot" 20 times from L1 and "cold" once.
// Node B writes both in one SetMany; the invalidation drops both from A's
// L1, and A reads "hot" again from L2 at once (no loader call), so its next
// reader hits L1 with B's value; "cold" stays out of L1. Node C, without
// the option, keeps neither.
func TestHotKeyRefresh(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		name := redistest.Name(t)
		ctx := context.Background()
		a := newHotNode(t, rdb, name, tiered.WithHotKeyRefresh(10, time.Minute))
		b := newHotNode(t, rdb, name)
		c := newHotNode(t, rdb, name)
		var loads atomic.Int64
		load := func(ctx context.Context, key string) (string, error) {
			loads.Add(1)
			return "v1-" + key, nil
		}
		for _, n := range []hotNode{a, c} {
			for range 20 {
				if v, err := n.c.GetOrLoad(ctx, "hot", load); err != nil || v != "v1-hot" {
					t.Fatalf("hot: %q, %v", v, err)
				}
			}
			if _, err := n.c.GetOrLoad(ctx, "cold", load); err != nil {
				t.Fatal(err)
			}
		}
		loadsBefore := loads.Load()
		if err := b.c.SetMany(ctx, map[string]string{"hot": "v2-hot", "cold": "v2-cold"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "A's L1 to hold B's hot value", func() bool {
			v, _, ok := a.l1.Get("hot")
			return ok && v == "v2-hot"
		})
		// Counted once the fill has returned, just after L1 holds it.
		eventually(t, 5*time.Second, "A HotReloads = 1", func() bool { return a.c.Stats().HotReloads == 1 })
		// On a Cluster the two keys may travel in two bus messages (one per
		// channel shard): wait for the cold key's. Whether a key counts as
		// hot is TestHotKeysCounting's part.
		eventually(t, 5*time.Second, "A to drop the cold key", func() bool {
			_, _, ok := a.l1.Get("cold")
			return !ok
		})
		eventually(t, 5*time.Second, "C to drop the hot key", func() bool {
			_, _, ok := c.l1.Get("hot")
			return !ok
		})
		if st := c.c.Stats(); st.HotReloads != 0 {
			t.Fatalf("C, without the option, reloaded %d keys", st.HotReloads)
		}
		hitsBefore := a.c.Stats().L1Hits
		if v, err := a.c.GetOrLoad(ctx, "hot", load); err != nil || v != "v2-hot" {
			t.Fatalf("A after the write: %q, %v", v, err)
		}
		if a.c.Stats().L1Hits != hitsBefore+1 {
			t.Fatal("A's read after the write was not an L1 hit")
		}
		if n := loads.Load(); n != loadsBefore {
			t.Fatalf("loader calls after the write = %d, want none", n-loadsBefore)
		}
	})
}

func TestHotKeyRefreshOptions(t *testing.T) {
	l1, err := local.New[string]()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tiered.New[string]("c", l1, nil, tiered.WithHotKeyRefresh(0, time.Second)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("zero threshold: %v, want ErrInvalidOption", err)
	}
	if _, err := tiered.New[string]("c", l1, nil, tiered.WithHotKeyRefresh(5, time.Second)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("no bus: %v, want ErrInvalidOption", err)
	}
}

// TestHotKeyCountingDoesNotAllocate: with WithHotKeyRefresh an L1 hit still
// allocates nothing (the count is an atomic in a fixed array).
func TestHotKeyCountingDoesNotAllocate(t *testing.T) {
	n := newHotNode(t, redistest.Standalone(t), redistest.Name(t), tiered.WithHotKeyRefresh(10, time.Minute))
	ctx := context.Background()
	if err := n.c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "k in L1", func() bool { _, _, ok := n.l1.Get("k"); return ok })
	load := func(context.Context, string) (string, error) { return "", errors.New("loader called on a hit") }
	if allocs := testing.AllocsPerRun(1000, func() {
		if _, err := n.c.GetOrLoad(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("an L1 hit with hot-key counting allocates %v objects, want 0", allocs)
	}
}
