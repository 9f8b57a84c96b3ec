package tiered_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// memRemote is an in-memory driver.Remote: a map of entries, without
// expiry (tests here do not wait for it).
type memRemote struct {
	mu sync.Mutex
	m  map[string]driver.Entry
}

func newMemRemote() *memRemote { return &memRemote{m: make(map[string]driver.Entry)} }

func (r *memRemote) Get(_ context.Context, key string) (driver.Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[key], nil
}

func (r *memRemote) GetMany(ctx context.Context, keys []string) ([]driver.Entry, error) {
	out := make([]driver.Entry, len(keys))
	for i, k := range keys {
		out[i], _ = r.Get(ctx, k)
	}
	return out, nil
}

func (r *memRemote) Set(_ context.Context, key string, e driver.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[key] = e
	return nil
}

func (r *memRemote) Delete(_ context.Context, keys ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		delete(r.m, k)
	}
	return nil
}

func (r *memRemote) Acquire(_ context.Context, key string, token uint64, expiresAt time.Time) (driver.Entry, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.m[key]; ok {
		return cur, false, nil
	}
	r.m[key] = driver.Entry{Kind: driver.KindLease, Version: token, ExpiresAt: expiresAt}
	return driver.Entry{}, true, nil
}

func (r *memRemote) CompareAndSwap(_ context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.m[key]; !ok || cur.Version != version {
		return false, nil
	}
	r.m[key] = e
	return true, nil
}

func (r *memRemote) CompareAndDelete(_ context.Context, key string, version uint64) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.m[key]; !ok || cur.Version != version {
		return false, nil
	}
	delete(r.m, key)
	return true, nil
}

func (r *memRemote) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (r *memRemote) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// memBus records what is published.
type memBus struct {
	mu        sync.Mutex
	published [][]string
}

func (b *memBus) Publish(_ context.Context, _ string, keys []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, slices.Clone(keys))
	return nil
}

func (b *memBus) Subscribe(namespace string, _ func([]string), _ func()) (driver.Subscription, error) {
	return busSubscription{bus: b, namespace: namespace}, nil
}

func (b *memBus) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.published)
}

func newFakeCache(t *testing.T, withL2 bool) (*tiered.Cache[user], *memBus) {
	t.Helper()
	l1, err := local.New[user]()
	if err != nil {
		t.Fatal(err)
	}
	var l2 driver.Remote
	if withL2 {
		l2 = newMemRemote()
	}
	bus := &memBus{}
	c, err := tiered.New[user]("cas", l1, l2, tiered.WithInvalidation(bus))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bus
}

func mustGet(t *testing.T, c *tiered.Cache[user], key string) (user, bool) {
	t.Helper()
	v, ok, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v, ok
}

func TestCompareAndSet(t *testing.T) {
	ctx := context.Background()
	for _, withL2 := range []bool{true, false} {
		name := "L1 only"
		if withL2 {
			name = "L1 and L2"
		}
		t.Run(name, func(t *testing.T) {
			c, bus := newFakeCache(t, withL2)
			if _, _, ok, err := c.GetVersioned(ctx, "k"); ok || err != nil {
				t.Fatalf("GetVersioned of a missing key = ok %v, %v; want a miss", ok, err)
			}

			// Unchanged since the read: the write lands and is published.
			if err := c.Set(ctx, "k", user{ID: "1"}); err != nil {
				t.Fatal(err)
			}
			v, ver, ok, err := c.GetVersioned(ctx, "k")
			if err != nil || !ok || v.ID != "1" {
				t.Fatalf("GetVersioned = %+v, ok %v, %v; want ID 1", v, ok, err)
			}
			published := bus.count()
			if swapped, err := c.CompareAndSet(ctx, "k", ver, user{ID: "2"}); err != nil || !swapped {
				t.Fatalf("CompareAndSet on the version read = %v, %v; want true", swapped, err)
			}
			if got, ok := mustGet(t, c, "k"); !ok || got.ID != "2" {
				t.Fatalf("after CompareAndSet Get = %+v, %v; want ID 2", got, ok)
			}
			if withL2 && bus.count() != published+1 {
				t.Errorf("CompareAndSet published %d times, want 1", bus.count()-published)
			}
			if withL2 {
				// The version changed with the write: the same version
				// cannot write twice.
				if swapped, _ := c.CompareAndSet(ctx, "k", ver, user{ID: "x"}); swapped {
					t.Error("a second CompareAndSet with the old version wrote")
				}
			}

			// A Delete since the read wins (a purge is not undone).
			_, ver, _, _ = c.GetVersioned(ctx, "k")
			if err := c.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			if swapped, err := c.CompareAndSet(ctx, "k", ver, user{ID: "3"}); err != nil || swapped {
				t.Fatalf("CompareAndSet after a Delete = %v, %v; want false", swapped, err)
			}
			if got, ok := mustGet(t, c, "k"); ok {
				t.Fatalf("after a Delete and a refused CompareAndSet Get = %+v; want a miss", got)
			}

			// A Set since the read wins.
			c.Set(ctx, "k", user{ID: "4"})
			_, ver, _, _ = c.GetVersioned(ctx, "k")
			c.Set(ctx, "k", user{ID: "5"})
			if swapped, _ := c.CompareAndSet(ctx, "k", ver, user{ID: "6"}); swapped {
				t.Fatal("CompareAndSet after a Set wrote")
			}
			if got, _ := mustGet(t, c, "k"); got.ID != "5" {
				t.Fatalf("after a Set and a refused CompareAndSet Get = %+v; want ID 5", got)
			}
		})
	}
}

// Two nodes on real Redis: a Delete on one node between the other's read
// and its conditional write wins everywhere; an undisturbed conditional
// write reaches the other node's L1 through the bus.
func TestCompareAndSetRedis(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		nodes := make([]*node[user], 2)
		for i := range nodes {
			nrdb := rdb
			if i == 1 {
				nrdb = newClientLike(t, rdb)
			}
			bus, err := invalidation.New(nrdb, invalidation.WithChannelPrefix(name))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bus.Close() })
			nodes[i] = newNode[user](t, name, nrdb, tiered.WithInvalidation(bus))
		}
		a, b := nodes[0], nodes[1]

		if err := a.Set(ctx, "k", user{ID: "1"}); err != nil {
			t.Fatal(err)
		}
		_, ver, ok, err := a.GetVersioned(ctx, "k")
		if err != nil || !ok {
			t.Fatalf("GetVersioned = ok %v, %v", ok, err)
		}
		if err := b.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if swapped, err := a.CompareAndSet(ctx, "k", ver, user{ID: "stale"}); err != nil || swapped {
			t.Fatalf("CompareAndSet after another node's Delete = %v, %v; want false", swapped, err)
		}
		if v, _, ok, err := a.GetVersioned(ctx, "k"); ok || err != nil {
			t.Fatalf("L2 holds %+v (%v) after the Delete and a refused CompareAndSet; want nothing", v, err)
		}
		if v, ok := mustGet(t, b.Cache, "k"); ok {
			t.Fatalf("node 1 reads %+v after its Delete; want a miss", v)
		}
		eventually(t, 5*time.Second, "node 0 to drop the deleted key", func() bool {
			_, ok := mustGet(t, a.Cache, "k")
			return !ok
		})

		if err := a.Set(ctx, "k", user{ID: "2"}); err != nil {
			t.Fatal(err)
		}
		if v, ok := mustGet(t, b.Cache, "k"); !ok || v.ID != "2" { // b's L1 now holds it
			t.Fatalf("node 1 reads %+v, %v; want ID 2", v, ok)
		}
		_, ver, _, _ = a.GetVersioned(ctx, "k")
		if swapped, err := a.CompareAndSet(ctx, "k", ver, user{ID: "3"}); err != nil || !swapped {
			t.Fatalf("CompareAndSet = %v, %v; want true", swapped, err)
		}
		eventually(t, 5*time.Second, "node 1 to read the conditional write", func() bool {
			v, _ := mustGet(t, b.Cache, "k")
			return v.ID == "3"
		})
	})
}

// newClientLike returns a second client to the deployment of rdb.
func newClientLike(t *testing.T, rdb redis.UniversalClient) redis.UniversalClient {
	if _, ok := rdb.(*redis.ClusterClient); ok {
		return redistest.Cluster(t)
	}
	return redistest.Standalone(t)
}
