package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// busCluster is several nodes of one cache, each with its own Redis client
// and its own invalidation bus, as separate service replicas would.
func busCluster[V any](t *testing.T, d testRedis, nodes int, opts ...tiered.Option) []*node[V] {
	t.Helper()
	name := redistest.Name(t)
	out := make([]*node[V], nodes)
	for i := range out {
		bus, err := invalidation.New(d.client(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() }) // after the cache's Close
		out[i] = newNode[V](t, name, d.client(t), append([]tiered.Option{tiered.WithInvalidation(bus)}, opts...)...)
	}
	return out
}

func TestSetManyWritesAndInvalidates(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		ctx := context.Background()
		nodes := busCluster[user](t, d, 2)
		a, b := nodes[0], nodes[1]
		keys := []string{"1", "2", "3", "4", "5", "6", "7", "8"}
		old := func(ctx context.Context, key string) (user, error) { return user{ID: key, Name: "old"}, nil }
		// B holds every key in its L1.
		for _, k := range keys {
			if _, err := b.GetOrLoad(ctx, k, old); err != nil {
				t.Fatal(err)
			}
		}
		b.l1.Wait()
		items := make(map[string]user, len(keys))
		for _, k := range keys {
			items[k] = user{ID: k, Name: "new"}
		}
		if err := a.SetMany(ctx, items, tiered.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		a.l1.Wait()
		noLoad := func(ctx context.Context, key string) (user, error) {
			t.Errorf("loader called for %q after SetMany", key)
			return user{}, nil
		}
		for _, k := range keys {
			// A reads its own writes. (From L1 unless two keys of the batch
			// share a generation stripe: the second invalidation then makes
			// fillAfterWrite skip the first key's fill, a lost fill that
			// is still correct.)
			if v, _, ok := a.l1.Get(k); ok && v.Name != "new" {
				t.Fatalf("A's L1 %q = %+v; want the new value", k, v)
			}
			if v, err := a.GetOrLoad(ctx, k, noLoad); err != nil || v.Name != "new" {
				t.Fatalf("A reads %q = %+v, %v; want the new value", k, v, err)
			}
			// L2 holds the new value with the batch's TTL.
			if e, err := a.l2.Get(ctx, a.Name()+":"+k); err != nil || e.Kind != driver.KindValue ||
				!strings.Contains(string(e.Payload), "new") || time.Until(e.ExpiresAt) > time.Minute*11/10 {
				t.Fatalf("L2 %q = kind %d %s until %v, %v", k, e.Kind, e.Payload, e.ExpiresAt, err)
			}
		}
		// B's copies are dropped by the one broadcast; it rereads L2.
		eventually(t, 5*time.Second, "B drops its old copies", func() bool {
			for _, k := range keys {
				if v, _, ok := b.l1.Get(k); ok && v.Name == "old" {
					return false
				}
			}
			return true
		})
		for _, k := range keys {
			if v, err := b.GetOrLoad(ctx, k, noLoad); err != nil || v.Name != "new" {
				t.Fatalf("B reads %q = %+v, %v; want the new value", k, v, err)
			}
		}
	})
}

func TestSetManyErrorsPerKey(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		n := newNode[user](t, redistest.Name(t), rdb)
		long := strings.Repeat("x", remote.DefaultMaxKeyBytes+1)
		err := n.SetMany(ctx, map[string]user{"a": {ID: "a"}, long: {}, "b": {ID: "b"}})
		var kerrs tiered.KeyErrors
		if !errors.As(err, &kerrs) || len(kerrs) != 1 || !errors.Is(kerrs[long], remote.ErrKeyTooLong) {
			t.Fatalf("SetMany = %v, want a KeyErrors with the long key alone", err)
		}
		if !errors.Is(err, tiered.ErrRemote) {
			t.Fatalf("SetMany = %v, want it to match ErrRemote", err)
		}
		for _, k := range []string{"a", "b"} {
			if v, ok, err := n.Get(ctx, k); err != nil || !ok || v.ID != k {
				t.Fatalf("Get(%q) = %+v, %v, %v; want the written value", k, v, ok, err)
			}
		}
		if _, _, ok := n.l1.Get(long); ok {
			t.Fatal("L1 holds the key L2 refused")
		}
		if err := n.SetMany(ctx, map[string]user{"a": {}, "": {}}); !errors.Is(err, tiered.ErrEmptyKey) {
			t.Fatalf("SetMany with an empty key = %v, want ErrEmptyKey", err)
		}
		if err := n.SetMany(ctx, nil); err != nil {
			t.Fatalf("SetMany(nil) = %v", err)
		}
	})
}

// TestSetManyBeatsLoadInFlight: a load running on another node when the
// batch lands never fills what it loaded, on any node.
func TestSetManyBeatsLoadInFlight(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		ctx := context.Background()
		nodes := busCluster[user](t, d, 3)
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
		got := make(chan user, 1)
		go func() {
			u, _ := a.GetOrLoad(ctx, "row", slow)
			got <- u
		}()
		<-readOld
		db.Store("new")
		if err := b.SetMany(ctx, map[string]user{"row": {ID: "row", Name: "new"}, "other": {ID: "other"}}); err != nil {
			t.Fatal(err)
		}
		close(release)
		if u := <-got; u.Name != "old" {
			t.Fatalf("A's caller got %q, want the old row it read", u.Name)
		}
		if st := a.Stats(); st.FillsRejected != 1 {
			t.Fatalf("A's rejected fills = %d, want 1", st.FillsRejected)
		}
		noLoad := func(ctx context.Context, key string) (user, error) {
			t.Errorf("loader called for %q", key)
			return user{}, nil
		}
		for i, n := range []*node[user]{a, b, c} {
			if v, _, ok := n.l1.Get("row"); ok && v.Name == "old" {
				t.Fatalf("node %d L1 holds the stale row", i)
			}
			if u, err := n.GetOrLoad(ctx, "row", noLoad); err != nil || u.Name != "new" {
				t.Fatalf("node %d reads %+v, %v; want the batch's row", i, u, err)
			}
		}
	})
}

// TestSetManyWithoutBatchStore: a Remote without SetMany gets one Set per
// key, with the same results.
func TestSetManyWithoutBatchStore(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Standalone(t)
	s, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[user](redistest.Name(t), nil, plainRemote{s})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	long := strings.Repeat("x", remote.DefaultMaxKeyBytes+1)
	err = c.SetMany(ctx, map[string]user{"a": {ID: "a"}, long: {}})
	var kerrs tiered.KeyErrors
	if !errors.As(err, &kerrs) || len(kerrs) != 1 || !errors.Is(kerrs[long], remote.ErrKeyTooLong) {
		t.Fatalf("SetMany = %v, want a KeyErrors with the long key alone", err)
	}
	if v, ok, err := c.Get(ctx, "a"); err != nil || !ok || v.ID != "a" {
		t.Fatalf("Get(a) = %+v, %v, %v", v, ok, err)
	}
}

// plainRemote hides the optional methods of a Remote.
type plainRemote struct{ driver.Remote }

// TestSetManyLocalOnlyKeepsEveryKey: without L2, L1 is the only tier, so a
// batch larger than the generation stripes (keys sharing a stripe) must
// still keep every key.
func TestSetManyLocalOnlyKeepsEveryKey(t *testing.T) {
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), nil)
	items := make(map[string]user, 10000)
	for i := range 10000 {
		k := fmt.Sprint("k", i)
		items[k] = user{ID: k}
	}
	if err := n.SetMany(ctx, items); err != nil {
		t.Fatal(err)
	}
	n.l1.Wait()
	missing := 0
	for k := range items {
		if v, ok, err := n.Get(ctx, k); err != nil || !ok || v.ID != k {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d keys missing after SetMany", missing, len(items))
	}
}
