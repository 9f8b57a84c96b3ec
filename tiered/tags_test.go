package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// taggedDB is a fake database whose rows carry a version; loaders tag even
// keys "even" and every key "all".
type taggedDB struct {
	version atomic.Int64
	mu      sync.Mutex
	loads   map[string]int
}

func newTaggedDB() *taggedDB { return &taggedDB{loads: map[string]int{}} }

func (db *taggedDB) row(key string) user {
	db.mu.Lock()
	db.loads[key]++
	db.mu.Unlock()
	return user{ID: key, Name: fmt.Sprint("v", db.version.Load())}
}

func (db *taggedDB) count(key string) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.loads[key]
}

func tagsOf(key string) []string {
	var n int
	fmt.Sscan(strings.TrimPrefix(key, "k"), &n)
	if n%2 == 0 {
		return []string{"even", "all"}
	}
	return []string{"all"}
}

func (db *taggedDB) load(ctx context.Context, key string) (user, error) {
	if err := tiered.SetTags(ctx, tagsOf(key)...); err != nil {
		return user{}, err
	}
	return db.row(key), nil
}

func (db *taggedDB) loadMany(ctx context.Context, keys []string) (map[string]user, error) {
	out := make(map[string]user, len(keys))
	for _, k := range keys {
		if err := tiered.SetKeyTags(ctx, k, tagsOf(k)...); err != nil {
			return nil, err
		}
		out[k] = db.row(k)
	}
	return out, nil
}

func TestInvalidateTagsReachesEveryNodeAndKey(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		ctx := context.Background()
		nodes := busCluster[user](t, d, 3, tiered.WithTags())
		db := newTaggedDB()
		var keys []string
		for i := range 12 {
			keys = append(keys, fmt.Sprint("k", i))
		}
		// Node 0 loads half the keys one by one, node 1 the other half in
		// a batch; then every node reads every key (L2 hits, L1 fills).
		for _, k := range keys[:6] {
			if _, err := nodes[0].GetOrLoad(ctx, k, db.load); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := nodes[1].GetOrLoadMany(ctx, keys[6:], db.loadMany); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			m, err := n.GetOrLoadMany(ctx, keys, db.loadMany)
			if err != nil || len(m) != len(keys) {
				t.Fatalf("GetOrLoadMany = %d values, %v", len(m), err)
			}
			n.l1.Wait()
		}
		for _, k := range keys {
			if c := db.count(k); c != 1 {
				t.Fatalf("key %s loaded %d times before the invalidation, want 1", k, c)
			}
		}
		db.version.Store(1)
		if err := nodes[2].InvalidateTags(ctx, "even"); err != nil {
			t.Fatal(err)
		}
		even := func(k string) bool { return len(tagsOf(k)) == 2 }
		for i, n := range nodes {
			eventually(t, 5*time.Second, fmt.Sprintf("node %d drops the even keys", i), func() bool {
				for _, k := range keys {
					if _, _, ok := n.l1.Get(k); ok && even(k) {
						return false
					}
				}
				return true
			})
			// Odd keys were not touched: still in L1 (no flush).
			for _, k := range keys {
				if _, _, ok := n.l1.Get(k); !ok && !even(k) {
					t.Fatalf("node %d lost untagged-by-even key %s from L1", i, k)
				}
			}
		}
		// Every node now reads the new even rows, loaded once in the
		// cluster; odd keys are not loaded again.
		for i, n := range nodes {
			var m map[string]user
			var err error
			if i == 1 {
				m, err = n.GetOrLoadMany(ctx, keys, db.loadMany)
			} else {
				m = map[string]user{}
				for _, k := range keys {
					var u user
					if u, err = n.GetOrLoad(ctx, k, db.load); err != nil {
						break
					}
					m[k] = u
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				want := "v0"
				if even(k) {
					want = "v1"
				}
				if m[k].Name != want {
					t.Fatalf("node %d key %s = %q, want %q", i, k, m[k].Name, want)
				}
			}
		}
		for _, k := range keys {
			want := 1
			if even(k) {
				want = 2
			}
			if c := db.count(k); c != want {
				t.Fatalf("key %s loaded %d times, want %d", k, c, want)
			}
		}
		// "all" covers every key.
		if err := nodes[0].InvalidateTags(ctx, "all"); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if _, ok, err := nodes[0].Get(ctx, k); ok || err != nil {
				t.Fatalf("Get(%s) after InvalidateTags(all) = %v, %v; want a miss", k, ok, err)
			}
		}
	})
}

// TestInvalidateTagsDuringLoad: a load that read the old row before an
// InvalidateTags of one of its tags stores it nowhere, single or batch.
func TestInvalidateTagsDuringLoad(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			eachDeploymentD(t, func(t *testing.T, d testRedis) {
				ctx := context.Background()
				nodes := busCluster[user](t, d, 3, tiered.WithTags())
				a, b := nodes[0], nodes[1]
				var version atomic.Value
				version.Store("old")
				readOld, release := make(chan struct{}), make(chan struct{})
				slow := func(ctx context.Context, key string) (user, error) {
					name := version.Load().(string)
					close(readOld)
					<-release
					return user{ID: key, Name: name}, tiered.SetTags(ctx, "t")
				}
				got := make(chan user, 1)
				go func() {
					if batch {
						m, _ := a.GetOrLoadMany(ctx, []string{"row"}, func(ctx context.Context, keys []string) (map[string]user, error) {
							u, err := slow(ctx, keys[0])
							return map[string]user{keys[0]: u}, err
						})
						got <- m["row"]
						return
					}
					u, _ := a.GetOrLoad(ctx, "row", slow)
					got <- u
				}()
				<-readOld
				version.Store("new")
				if err := b.InvalidateTags(ctx, "t"); err != nil {
					t.Fatal(err)
				}
				close(release)
				if u := <-got; u.Name != "old" {
					t.Fatalf("A's caller got %q, want the old row it read", u.Name)
				}
				fresh := func(ctx context.Context, key string) (user, error) {
					return user{ID: key, Name: version.Load().(string)}, tiered.SetTags(ctx, "t")
				}
				for i, n := range nodes {
					if v, _, ok := n.l1.Get("row"); ok && v.Name == "old" {
						t.Fatalf("node %d L1 holds the old row", i)
					}
					if u, err := n.GetOrLoad(ctx, "row", fresh); err != nil || u.Name != "new" {
						t.Fatalf("node %d reads %+v, %v; want the new row", i, u, err)
					}
				}
			})
		})
	}
}

func TestTaggedWrites(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		ctx := context.Background()
		nodes := busCluster[user](t, d, 2)
		a, b := nodes[0], nodes[1]
		if err := a.Set(ctx, "s", user{ID: "s"}, tiered.Tags("x", "y")); err != nil {
			t.Fatal(err)
		}
		if err := a.SetMany(ctx, map[string]user{"m1": {ID: "m1"}, "m2": {ID: "m2"}}, tiered.Tags("y"), tiered.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := a.Set(ctx, "plain", user{ID: "plain"}); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"s", "m1", "m2", "plain"} {
			if _, ok, err := b.Get(ctx, k); !ok || err != nil {
				t.Fatalf("B Get(%s) = %v, %v", k, ok, err)
			}
		}
		a.l1.Wait()
		b.l1.Wait()
		if err := b.InvalidateTags(ctx, "y"); err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			eventually(t, 5*time.Second, fmt.Sprintf("node %d drops the tagged writes", i), func() bool {
				for _, k := range []string{"s", "m1", "m2"} {
					if _, _, ok := n.l1.Get(k); ok {
						return false
					}
				}
				return true
			})
			for _, k := range []string{"s", "m1", "m2"} {
				if _, ok, err := n.Get(ctx, k); ok || err != nil {
					t.Fatalf("node %d Get(%s) = %v, %v; want a miss", i, k, ok, err)
				}
			}
			if _, ok, err := n.Get(ctx, "plain"); !ok || err != nil {
				t.Fatalf("node %d Get(plain) = %v, %v; want the untagged value", i, ok, err)
			}
		}
	})
}

// TestFirstTaggedLoadWithoutWithTags: without WithTags, the first tagged
// load of a node is returned but not stored; the cache then reads the tag
// epoch before every load and stores the next.
func TestFirstTaggedLoadWithoutWithTags(t *testing.T) {
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), redistest.Standalone(t))
	db := newTaggedDB()
	for i := range 3 {
		if u, err := n.GetOrLoad(ctx, "k2", db.load); err != nil || u.ID != "k2" {
			t.Fatalf("call %d: %+v, %v", i, u, err)
		}
		n.l1.Wait()
	}
	if c := db.count("k2"); c != 2 {
		t.Fatalf("loads = %d, want 2 (the first is not stored)", c)
	}
}

func TestBadTags(t *testing.T) {
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), redistest.Standalone(t), tiered.WithTags())
	many := make([]string, tiered.MaxTags+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	for _, tags := range [][]string{{""}, {strings.Repeat("x", tiered.MaxTagBytes+1)}, many} {
		if err := n.Set(ctx, "k", user{}, tiered.Tags(tags...)); !errors.Is(err, tiered.ErrInvalidTag) {
			t.Fatalf("Set with Tags(%d tags) = %v, want ErrInvalidTag", len(tags), err)
		}
		_, err := n.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (user, error) {
			tiered.SetTags(ctx, tags...)
			return user{}, nil
		})
		if !errors.Is(err, tiered.ErrInvalidTag) {
			t.Fatalf("loader with SetTags(%d tags): %v, want ErrInvalidTag", len(tags), err)
		}
	}
	if err := n.InvalidateTags(ctx, ""); !errors.Is(err, tiered.ErrInvalidTag) {
		t.Fatalf("InvalidateTags(\"\") = %v", err)
	}
	if err := tiered.SetTags(ctx, "x"); !errors.Is(err, tiered.ErrNotInLoader) {
		t.Fatalf("SetTags outside a loader = %v", err)
	}
	if _, err := n.GetOrLoad(ctx, "\x00tag:x", func(context.Context, string) (user, error) { return user{}, nil }); !errors.Is(err, tiered.ErrReservedKey) {
		t.Fatalf("GetOrLoad of a reserved key = %v, want ErrReservedKey", err)
	}
	// A Remote without tag support refuses tags loudly.
	c, err := tiered.New[user](redistest.Name(t), nil, plainRemote{n.l2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "k", user{}, tiered.Tags("x")); !errors.Is(err, tiered.ErrTagsUnsupported) {
		t.Fatalf("Set with tags on a plain Remote = %v, want ErrTagsUnsupported", err)
	}
	if err := c.InvalidateTags(ctx, "x"); !errors.Is(err, tiered.ErrTagsUnsupported) {
		t.Fatalf("InvalidateTags on a plain Remote = %v, want ErrTagsUnsupported", err)
	}
}

// fakeBus is an in-memory Bus delivering to every subscriber but the
// publisher's, recording what was published.
type fakeBus struct {
	mu        sync.Mutex
	subs      map[int]func([]string)
	flushes   map[int]func()
	next      int
	published [][]string
}

func (b *fakeBus) Publish(_ context.Context, namespace string, keys []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, append([]string{namespace}, keys...))
	for _, f := range b.subs {
		f(keys)
	}
	return nil
}

func (b *fakeBus) Subscribe(namespace string, invalidate func([]string), flush func()) (driver.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs, b.flushes = map[int]func([]string){}, map[int]func(){}
	}
	id := b.next
	b.next++
	b.subs[id], b.flushes[id] = invalidate, flush
	return busSubscription{bus: b, namespace: namespace, unsubscribe: func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, id)
		delete(b.flushes, id)
	}}, nil
}

// TestTagMessagesAreOrdinaryKeys: InvalidateTags publishes its tags as
// reserved keys of the cache's own namespace, so they share the bus's
// sequence numbers and loss detection with every other invalidation (a lost
// one is a gap: the bus flushes L1).
func TestTagMessagesAreOrdinaryKeys(t *testing.T) {
	ctx := context.Background()
	bus := &fakeBus{}
	l1, err := local.New[user]()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[user]("tagged", l1, nil, tiered.WithInvalidation(bus))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "k", user{}, tiered.Tags("t")); err != nil {
		t.Fatal(err)
	}
	if err := c.InvalidateTags(ctx, "t", "u"); err != nil {
		t.Fatal(err)
	}
	bus.mu.Lock()
	last := bus.published[len(bus.published)-1]
	bus.mu.Unlock()
	if want := []string{"tagged", "\x00tag:t", "\x00tag:u"}; fmt.Sprint(last) != fmt.Sprint(want) {
		t.Fatalf("published %q, want %q", last, want)
	}
	// A tag message from another node drops the tagged key here.
	if err := c.Set(ctx, "k", user{}, tiered.Tags("t")); err != nil {
		t.Fatal(err)
	}
	l1.Wait()
	bus.mu.Lock()
	for _, f := range bus.subs {
		f([]string{"other", "\x00tag:t"})
	}
	bus.mu.Unlock()
	if _, _, ok := l1.Get("k"); ok {
		t.Fatal("a tag message from the bus left the tagged key in L1")
	}
}

// TestCorruptTagHeader: a tagged entry whose header cannot be read is a
// miss, deleted and reloaded, like any corrupt value.
func TestCorruptTagHeader(t *testing.T) {
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), redistest.Standalone(t), tiered.WithTags())
	bad := driver.Entry{Kind: driver.KindTagged, Payload: []byte{0xff}, ExpiresAt: time.Now().Add(time.Minute), Version: 7}
	if err := n.l2.Set(ctx, n.Name()+":k", bad); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := n.Get(ctx, "k"); ok || err != nil {
		t.Fatalf("Get of a corrupt tagged entry = %v, %v; want a miss", ok, err)
	}
	if e, err := n.l2.Get(ctx, n.Name()+":k"); err != nil || e.Kind != driver.KindNone {
		t.Fatalf("the corrupt entry is still there: kind %d, %v", e.Kind, err)
	}
	db := newTaggedDB()
	if u, err := n.GetOrLoad(ctx, "k2", db.load); err != nil || u.ID != "k2" {
		t.Fatalf("GetOrLoad = %+v, %v", u, err)
	}
}
