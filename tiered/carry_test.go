package tiered_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// carrierRemote is a remote.Store whose carried writes (SET and the bus's
// message in one round trip) are counted and hooked.
type carrierRemote struct {
	*remote.Store
	carried  atomic.Int64
	afterSet func(key string)
}

func (r *carrierRemote) SetAndPublish(ctx context.Context, key string, e driver.Entry, command, channel string, payload []byte) (error, error) {
	r.carried.Add(1)
	setErr, pubErr := r.Store.SetAndPublish(ctx, key, e, command, channel, payload)
	if r.afterSet != nil {
		r.afterSet(key)
	}
	return setErr, pubErr
}

// signallingL1 is the ristretto L1 calling onInvalidate after every
// Invalidate.
type signallingL1 struct {
	*local.Store[string]
	onInvalidate func(keys []string)
}

func (l *signallingL1) Invalidate(keys ...string) {
	l.Store.Invalidate(keys...)
	if f := l.onInvalidate; f != nil {
		f(keys)
	}
}

type carryNode struct {
	c   *tiered.Cache[string]
	l1  *signallingL1
	l2  *carrierRemote
	rdb redis.UniversalClient
}

// carryNodes starts n nodes of cache name, each with its own client, bus
// (on that client, so Sets are carried) and L1.
func carryNodes(t *testing.T, rdbOf func(*testing.T) redis.UniversalClient, name string, n int) []*carryNode {
	t.Helper()
	nodes := make([]*carryNode, n)
	for i := range nodes {
		rdb := rdbOf(t)
		bus, err := invalidation.New(rdb, invalidation.WithChannelPrefix(name+":bus"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
		st, err := remote.New(rdb)
		if err != nil {
			t.Fatal(err)
		}
		store, err := local.New[string]()
		if err != nil {
			t.Fatal(err)
		}
		nd := &carryNode{l1: &signallingL1{Store: store}, l2: &carrierRemote{Store: st}, rdb: rdb}
		nd.c, err = tiered.New[string](name, nd.l1, nd.l2, tiered.WithInvalidation(bus), tiered.WithRemoteTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.c.Close() })
		nodes[i] = nd
	}
	return nodes
}

// TestCarriedSetRacingOtherNode is TestConcurrentSetsAcrossNodes on the
// carried write path over real buses: A's SET and invalidation land in one
// round trip, then B's whole Set (its invalidation reaching A), then A's L1
// fill. A must not keep "A" in L1 while L2 holds "B".
func TestCarriedSetRacingOtherNode(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			nodes := carryNodes(t, d.client, redistest.Name(t), 2)
			a, b := nodes[0], nodes[1]
			reached := make(chan struct{}, 1)
			a.l1.onInvalidate = func(keys []string) {
				if len(keys) == 1 && keys[0] == "k" {
					select {
					case reached <- struct{}{}:
					default:
					}
				}
			}
			var once sync.Once
			a.l2.afterSet = func(string) {
				once.Do(func() {
					if err := b.c.Set(ctx, "k", "B"); err != nil {
						t.Error(err)
					}
					select { // B's invalidation reached A
					case <-reached:
					case <-time.After(10 * time.Second):
						t.Error("B's invalidation did not reach A")
					}
				})
			}
			if err := a.c.Set(ctx, "k", "A"); err != nil {
				t.Fatal(err)
			}
			if a.l2.carried.Load() == 0 {
				t.Fatal("A's Set was not carried")
			}
			a.l1.Wait()
			if v, _, ok := a.l1.Get("k"); ok {
				t.Fatalf("A's L1 holds %q after B's later Set; L2 holds B", v)
			}
			for name, n := range map[string]*carryNode{"A": a, "B": b} {
				if v, ok, err := n.c.Get(ctx, "k"); err != nil || !ok || v != "B" {
					t.Errorf("%s reads %q, %v, %v; want B", name, v, ok, err)
				}
			}
		})
	}
}

// TestCarriedInvalidationFollowsTheWrite: when a carried invalidation
// reaches another node, L2 already holds the new value, on every write.
func TestCarriedInvalidationFollowsTheWrite(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			name := redistest.Name(t)
			nodes := carryNodes(t, d.client, name, 2)
			a, b := nodes[0], nodes[1]
			seen := make(chan string, 1)
			b.l1.onInvalidate = func(keys []string) {
				if len(keys) != 1 || keys[0] != "k" {
					return
				}
				raw, err := b.rdb.Get(ctx, name+":k").Result()
				if err != nil {
					raw = "error: " + err.Error()
				}
				select {
				case seen <- raw:
				default:
				}
			}
			const writes = 50
			for i := range writes {
				want := "v" + strings.Repeat("x", i)
				if err := a.c.Set(ctx, "k", want); err != nil {
					t.Fatal(err)
				}
				select {
				case raw := <-seen:
					if !strings.Contains(raw, `"`+want+`"`) {
						t.Fatalf("write %d: B was told to drop k while L2 held %q, not %q", i, raw, want)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("write %d: no invalidation at B", i)
				}
			}
			if n := a.l2.carried.Load(); n != writes {
				t.Errorf("%d of %d Sets carried; an idle bus carries every one", n, writes)
			}
		})
	}
}
