package tiered_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// The tag protocol when Redis loses the tag epoch (evicted under maxmemory,
// expired, deleted): a load that raced an InvalidateTags must still store
// nothing (issue 23).

// heldBus is an in-memory Bus that holds every message until deliver: a bus
// lagging for as long as the test wants.
type heldBus struct {
	mu   sync.Mutex
	subs []func([]string)
	held [][]string
}

func (b *heldBus) Publish(_ context.Context, _ string, keys []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = append(b.held, append([]string(nil), keys...))
	return nil
}

func (b *heldBus) Subscribe(namespace string, invalidate func([]string), _ func()) (driver.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, invalidate)
	return busSubscription{bus: b, namespace: namespace}, nil
}

// deliver hands every held message to every subscriber.
func (b *heldBus) deliver() {
	b.mu.Lock()
	held, subs := b.held, b.subs
	b.held = nil
	b.mu.Unlock()
	for _, keys := range held {
		for _, f := range subs {
			f(keys)
		}
	}
}

// tagNodes returns n caches called name on rdb (L2-only without bus, else
// each with its own L1 on bus), declaring WithTags.
func tagNodes(t *testing.T, name string, rdb redis.UniversalClient, n int, bus driver.Bus, opts ...tiered.Option) []*tiered.Cache[user] {
	t.Helper()
	out := make([]*tiered.Cache[user], n)
	for i := range out {
		l2, err := remote.New(rdb)
		if err != nil {
			t.Fatal(err)
		}
		all := append([]tiered.Option{tiered.WithTags(), tiered.WithRemoteTimeout(5 * time.Second)}, opts...)
		var l1 driver.Local[user]
		if bus != nil {
			s, err := local.New[user]()
			if err != nil {
				t.Fatal(err)
			}
			l1 = s
			all = append(all, tiered.WithInvalidation(bus))
		}
		c, err := tiered.New[user](name, l1, l2, all...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[i] = c
	}
	return out
}

// epochKeyOf is the L2 key of cache name's tag epoch (docs/tags.md).
func epochKeyOf(name string) string { return name + ":\x00tag:" }

// racedLoad runs one load of key on loader that reads the row, tags it "t",
// and then waits while during() runs (the row changes, an InvalidateTags of
// "t" returns, and whatever else the test does); it returns what the
// loader's caller got.
func racedLoad(t *testing.T, c *tiered.Cache[user], key string, version *atomic.Value, during func()) user {
	t.Helper()
	ctx := context.Background()
	read, release := make(chan struct{}), make(chan struct{})
	type result struct {
		u   user
		err error
	}
	got := make(chan result, 1)
	go func() {
		u, err := c.GetOrLoad(ctx, key, func(ctx context.Context, key string) (user, error) {
			u := user{ID: key, Name: version.Load().(string)}
			if err := tiered.SetTags(ctx, "t"); err != nil {
				return user{}, err
			}
			close(read)
			<-release
			return u, nil
		})
		got <- result{u, err}
	}()
	<-read
	during()
	close(release)
	r := <-got
	if r.err != nil {
		t.Fatalf("the raced load of %s: %v", key, r.err)
	}
	return r.u
}

// freshTagged loads the current row, tagged "t".
func freshTagged(version *atomic.Value) tiered.Loader[user] {
	return func(ctx context.Context, key string) (user, error) {
		return user{ID: key, Name: version.Load().(string)}, tiered.SetTags(ctx, "t")
	}
}

// TestTagEpochDeletedDuringLoad: on a cache never invalidated before (no tag
// epoch in L2 when the load begins), a loader reads the old row; the row
// changes, another node's InvalidateTags("t") returns, and the epoch key is
// deleted (as maxmemory eviction would) before the load ends. No node may
// then serve the old row: not an L1+L2 cache whose bus has not delivered
// the tag message yet (the loading node's local epoch did not move), not an
// L2-only cache (which has no bus at all).
func TestTagEpochDeletedDuringLoad(t *testing.T) {
	for _, withL1 := range []bool{true, false} {
		t.Run(map[bool]string{true: "L1+L2 lagging bus", false: "L2 only"}[withL1], func(t *testing.T) {
			eachDeploymentD(t, func(t *testing.T, d testRedis) {
				ctx := context.Background()
				rdb := d.client(t)
				name := redistest.Name(t)
				var bus *heldBus
				var b driver.Bus
				if withL1 {
					bus = &heldBus{}
					b = bus
				}
				nodes := tagNodes(t, name, rdb, 3, b)
				var version atomic.Value
				version.Store("old")
				u := racedLoad(t, nodes[0], "row", &version, func() {
					version.Store("new")
					if err := nodes[1].InvalidateTags(ctx, "t"); err != nil {
						t.Fatal(err)
					}
					if err := rdb.Del(ctx, epochKeyOf(name)).Err(); err != nil {
						t.Fatal(err)
					}
				})
				if u.Name != "old" {
					t.Fatalf("the raced load's caller got %q, want the old row it read", u.Name)
				}
				stale := 0
				for i, n := range nodes {
					u, err := n.GetOrLoad(ctx, "row", freshTagged(&version))
					if err != nil {
						t.Fatalf("node %d: %v", i, err)
					}
					if u.Name != "new" {
						stale++
					}
				}
				if stale > 0 {
					t.Fatalf("%d of %d nodes served the row loaded before the InvalidateTags, after it returned", stale, len(nodes))
				}
				if bus != nil {
					bus.deliver()
					for i, n := range nodes {
						if u, err := n.GetOrLoad(ctx, "row", freshTagged(&version)); err != nil || u.Name != "new" {
							t.Fatalf("node %d after the bus delivered: %+v, %v; want the new row", i, u, err)
						}
					}
				}
			})
		})
	}
}

// TestTagEpochEvictedUnderMaxmemory: a private redis-server with 4 MB of
// maxmemory and allkeys-lru. Each round, a load reads the old row of a
// fresh key; the row changes and another node's InvalidateTags returns;
// while the load still runs, the server takes 2 MB of other writes, which
// evict keys at random among those not used within the last second (Redis's
// LRU clock ticks once a second): the tag epoch, the tag's generation, the
// load's lease, older values. Then a caller who came after the
// InvalidateTags reads the key on the other node: the old row there is a
// racing load served stale. Caches are L2-only (no bus can help), with
// leases (a load whose lease was evicted stores nothing anyway) and without.
func TestTagEpochEvictedUnderMaxmemory(t *testing.T) {
	srv := redistest.NewServer(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
	rdb := srv.Client(t)
	ctx := context.Background()
	for _, leases := range []bool{true, false} {
		t.Run(map[bool]string{true: "leases", false: "WithoutLeases"}[leases], func(t *testing.T) {
			name := redistest.Name(t)
			var opts []tiered.Option
			if !leases {
				opts = append(opts, tiered.WithoutLeases())
			}
			nodes := tagNodes(t, name, rdb, 2, nil, opts...)
			filler := bytes.Repeat([]byte{'x'}, 64<<10)
			const rounds = 100
			stale, evicted := 0, 0
			for i := range rounds {
				key := fmt.Sprint("row", i)
				var version atomic.Value
				version.Store("old")
				u := racedLoad(t, nodes[0], key, &version, func() {
					version.Store("new")
					if err := nodes[1].InvalidateTags(ctx, "t"); err != nil {
						t.Fatal(err)
					}
					for j := range 32 {
						if err := rdb.Set(ctx, fmt.Sprintf("%s:fill:%d:%d", name, i, j), filler, 0).Err(); err != nil {
							t.Fatal(err)
						}
					}
					if n, err := rdb.Exists(ctx, epochKeyOf(name)).Result(); err != nil {
						t.Fatal(err)
					} else if n == 0 {
						evicted++
					}
				})
				if u.Name != "old" {
					t.Fatalf("round %d: the raced load's caller got %q, want the old row", i, u.Name)
				}
				got, err := nodes[1].GetOrLoad(ctx, key, freshTagged(&version))
				if err != nil {
					t.Fatal(err)
				}
				if got.Name != "new" {
					stale++
				}
			}
			info, err := rdb.Info(ctx, "stats").Result()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d of %d racing loads served stale; the tag epoch was evicted during %d of the loads; server (both subtests) %s",
				stale, rounds, evicted, infoLine(info, "evicted_keys"))
			if stale > 0 {
				t.Fatalf("%d of %d racing loads were served stale after their InvalidateTags returned", stale, rounds)
			}
		})
	}
}

func infoLine(info, field string) string {
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, field+":") {
			return strings.TrimSpace(l)
		}
	}
	return field + ": ?"
}

// roundTrips is a go-redis hook counting round trips (one per command sent
// alone, one per pipeline) and the commands they carried (by name).
type roundTrips struct {
	mu    sync.Mutex
	trips int
	cmds  []string
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// An EVALSHA of a script the server has not cached yet is
			// retried as EVAL: count that one only.
			r.add([]redis.Cmder{cmd})
		}
		return err
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		r.add(cmds)
		return err
	}
}

// add counts a round trip, leaving out connection handshakes (HELLO,
// CLIENT SETINFO) and Cluster topology queries.
func (r *roundTrips) add(cmds []redis.Cmder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range cmds {
		if name := c.Name(); name != "hello" && name != "client" && name != "cluster" {
			r.cmds = append(r.cmds, fmt.Sprint(c.Args()[0]))
			n++
		}
	}
	if n > 0 {
		r.trips++
	}
}

func (r *roundTrips) take() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	trips, cmds := r.trips, r.cmds
	r.trips, r.cmds = 0, nil
	return trips, cmds
}

// TestTaggedLoadRoundTrips pins what tags add to a cold miss (one tag, a
// cache with WithTags) over an untagged one on a cache that never saw tags:
// the tag epoch before the loader (read or created), the tag's generation
// and the epoch again after it, 3 commands; on a standalone server the last
// two share a pipeline (2 more round trips), on a Cluster they do not (3).
// The guard against an evicted epoch costs no round trip.
func TestTaggedLoadRoundTrips(t *testing.T) {
	for _, d := range []struct {
		name  string
		trips int
		dial  func(t *testing.T) redis.UniversalClient
	}{
		{"standalone", 2, func(t *testing.T) redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t)})
		}},
		{"cluster", 3, func(t *testing.T) redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
		}},
	} {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			rdb := d.dial(t)
			t.Cleanup(func() { rdb.Close() })
			hook := &roundTrips{}
			rdb.AddHook(hook)
			l2, err := remote.New(rdb)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := tiered.New[user](redistest.Name(t)+"-plain", nil, l2)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { plain.Close() })
			tagged := tagNodes(t, redistest.Name(t), rdb, 1, nil)[0]
			var version atomic.Value
			version.Store("v")
			untagged := func(ctx context.Context, key string) (user, error) { return user{ID: key}, nil }
			for i := range 2 { // the first creates the epoch and the tag's generation
				key := fmt.Sprint("k", i)
				hook.take()
				if _, err := plain.GetOrLoad(ctx, key, untagged); err != nil {
					t.Fatal(err)
				}
				baseTrips, baseCmds := hook.take()
				if _, err := tagged.GetOrLoad(ctx, key, freshTagged(&version)); err != nil {
					t.Fatal(err)
				}
				trips, cmds := hook.take()
				t.Logf("cold miss %d: untagged %d round trips %v; tagged %d round trips %v", i, baseTrips, baseCmds, trips, cmds)
				if trips-baseTrips != d.trips || len(cmds)-len(baseCmds) != 3 {
					t.Fatalf("cold miss %d: tags add %d round trips carrying %d commands; want %d carrying 3",
						i, trips-baseTrips, len(cmds)-len(baseCmds), d.trips)
				}
			}
		})
	}
}
