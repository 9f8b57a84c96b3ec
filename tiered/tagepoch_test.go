package tiered_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// The tag protocol when Redis loses a tag's generation (evicted under
// maxmemory, expired, deleted), around a load that races an InvalidateTags
// (issue 23; tagevict_test.go does the same for the tag epoch). A load reads
// its tags' generations after its loader returns, not before, so there is no
// generation snapshot for an eviction to fool: what guards the load is the
// tag epoch, and what guards a stored value is that a missing generation (0)
// or a re-created one (random) never equals the one it recorded.

// tagGenKeyOf is the L2 key of tag's generation in cache name (docs/tags.md).
func tagGenKeyOf(name, tag string) string { return name + ":\x00tag:" + tag }

// TestTagGenerationEvictedDuringLoad: a loader reads the old row; the row
// changes, another node's InvalidateTags("t") returns, and the tag's
// generation is deleted (as maxmemory eviction would), alone or with the tag
// epoch, before the load ends. The load creates the generation afresh
// after its loader; no node may then serve the old row (L1 caches whose bus
// has not delivered, and L2-only caches).
func TestTagGenerationEvictedDuringLoad(t *testing.T) {
	for _, withL1 := range []bool{true, false} {
		for _, epochToo := range []bool{false, true} {
			name := map[bool]string{true: "L1+L2 lagging bus", false: "L2 only"}[withL1] +
				map[bool]string{false: "/generation", true: "/generation and epoch"}[epochToo]
			t.Run(name, func(t *testing.T) {
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
					// The generation and the epoch exist before the load.
					if _, err := nodes[2].GetOrLoad(ctx, "other", freshTagged(&version)); err != nil {
						t.Fatal(err)
					}
					u := racedLoad(t, nodes[0], "row", &version, func() {
						version.Store("new")
						if err := nodes[1].InvalidateTags(ctx, "t"); err != nil {
							t.Fatal(err)
						}
						del := []string{tagGenKeyOf(name, "t")}
						if epochToo {
							del = append(del, epochKeyOf(name))
						}
						for _, k := range del { // one by one: on a Cluster they are in different slots
							if n, err := rdb.Del(ctx, k).Result(); err != nil || n != 1 {
								t.Fatalf("DEL %q: %d, %v; want 1 key deleted", k, n, err)
							}
						}
					})
					if u.Name != "old" {
						t.Fatalf("the raced load's caller got %q, want the old row it read", u.Name)
					}
					// Before the bus delivers, node 2 may serve its L1 copy of
					// "other", loaded before the InvalidateTags: that is the
					// bus's own lag, not the raced load.
					before := []string{"row", "other"}
					if withL1 {
						before = before[:1]
					}
					assertAllServe(t, nodes, 0, before, &version, "before the bus delivered")
					if bus != nil {
						bus.deliver()
						assertAllServe(t, nodes, 0, []string{"row", "other"}, &version, "after the bus delivered")
					}
				})
			})
		}
	}
}

// assertAllServe fails t unless every node answers every key with the
// current row (nodes[i] is called node first+i in messages).
func assertAllServe(t *testing.T, nodes []*tiered.Cache[user], first int, keys []string, version *atomic.Value, when string) {
	t.Helper()
	want := version.Load().(string)
	stale := 0
	for i, n := range nodes {
		for _, k := range keys {
			u, err := n.GetOrLoad(context.Background(), k, freshTagged(version))
			if err != nil {
				t.Fatalf("node %d, %s: %v", first+i, k, err)
			}
			if u.Name != want {
				t.Errorf("node %d served %s = %q %s, want %q", first+i, k, u.Name, when, want)
				stale++
			}
		}
	}
	if stale > 0 {
		t.Fatalf("%d of %d answers stale %s", stale, len(nodes)*len(keys), when)
	}
}

// holdCommand is a go-redis hook that, once armed, holds the first command
// (or pipeline) naming key until resume is closed, after closing held.
type holdCommand struct {
	key    string
	armed  atomic.Bool
	held   chan struct{}
	resume chan struct{}
}

func newHoldCommand(key string) *holdCommand {
	return &holdCommand{key: key, held: make(chan struct{}), resume: make(chan struct{})}
}

func (h *holdCommand) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.hold([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h *holdCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.hold(cmds)
		return next(ctx, cmds)
	}
}

func (h *holdCommand) hold(cmds []redis.Cmder) {
	if !h.armed.Load() {
		return
	}
	for _, c := range cmds {
		for _, a := range c.Args() {
			if s, ok := a.(string); ok && s == h.key && h.armed.CompareAndSwap(true, false) {
				close(h.held)
				<-h.resume
				return
			}
		}
	}
}

// TestTagGenerationEvictedBeforeStore: a load passed its check (generation
// G read, epoch unchanged) and its write of the value, recording G, is held
// on the wire. Meanwhile the row changes, another node's InvalidateTags
// returns, the tag's generation is deleted, and (in one variant) a third
// node's tagged load of another key creates it again. The held write then
// lands: its value records a generation that is gone, so no node may serve
// it; the L1 copy the loading node keeps goes when the tag message reaches
// it (the bus's own lag, as for any invalidation).
func TestTagGenerationEvictedBeforeStore(t *testing.T) {
	for _, withL1 := range []bool{true, false} {
		for _, recreate := range []bool{false, true} {
			name := map[bool]string{true: "L1+L2 lagging bus", false: "L2 only"}[withL1] +
				map[bool]string{false: "/gone", true: "/created again"}[recreate]
			t.Run(name, func(t *testing.T) {
				eachDeploymentD(t, func(t *testing.T, d testRedis) {
					ctx := context.Background()
					rdb := d.client(t)
					name := redistest.Name(t)
					hold := newHoldCommand(name + ":row")
					rdb.AddHook(hold)
					resume := sync.OnceFunc(func() { close(hold.resume) })
					defer resume() // a failure while the write is held must not leave it held
					var bus *heldBus
					var b driver.Bus
					if withL1 {
						bus = &heldBus{}
						b = bus
					}
					nodes := tagNodes(t, name, rdb, 3, b)
					var version atomic.Value
					version.Store("old")
					type result struct {
						u   user
						err error
					}
					got := make(chan result, 1)
					go func() {
						u, err := nodes[0].GetOrLoad(ctx, "row", func(ctx context.Context, key string) (user, error) {
							u := user{ID: key, Name: version.Load().(string)}
							hold.armed.Store(true) // the next command naming the key is the value's write
							return u, tiered.SetTags(ctx, "t")
						})
						got <- result{u, err}
					}()
					select {
					case <-hold.held:
					case r := <-got:
						t.Fatalf("the load ended (%+v, %v) without writing the value to L2", r.u, r.err)
					}
					version.Store("new")
					if err := nodes[1].InvalidateTags(ctx, "t"); err != nil {
						t.Fatal(err)
					}
					if n, err := rdb.Del(ctx, tagGenKeyOf(name, "t")).Result(); err != nil || n != 1 {
						t.Fatalf("DEL the generation: %d, %v; want 1 key deleted", n, err)
					}
					if recreate {
						if _, err := nodes[2].GetOrLoad(ctx, "other", freshTagged(&version)); err != nil {
							t.Fatal(err)
						}
						if g, err := rdb.Get(ctx, tagGenKeyOf(name, "t")).Result(); err != nil {
							t.Fatalf("the generation after the other key's load: %q, %v; want one created", g, err)
						}
					}
					resume()
					if r := <-got; r.err != nil || r.u.Name != "old" {
						t.Fatalf("the held load's caller got %+v, %v; want the old row it read", r.u, r.err)
					}
					first := 1 // node 0 may serve its L1 copy until the bus delivers
					if !withL1 {
						first = 0
					}
					assertAllServe(t, nodes[first:], first, []string{"row", "other"}, &version, "before the bus delivered")
					if bus != nil {
						bus.deliver()
						assertAllServe(t, nodes, 0, []string{"row", "other"}, &version, "after the bus delivered")
					}
				})
			})
		}
	}
}

// TestTagGenerationEvictedReloadsOnce: a tagged value whose generation was
// evicted (no InvalidateTags) is a miss on every node: the first reader
// reloads it once, with a new generation, and the others hit that.
func TestTagGenerationEvictedReloadsOnce(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		ctx := context.Background()
		rdb := d.client(t)
		name := redistest.Name(t)
		nodes := tagNodes(t, name, rdb, 3, nil)
		var loads atomic.Int64
		var version atomic.Value
		version.Store("v1")
		load := func(ctx context.Context, key string) (user, error) {
			loads.Add(1)
			return freshTagged(&version)(ctx, key)
		}
		if _, err := nodes[0].GetOrLoad(ctx, "row", load); err != nil {
			t.Fatal(err)
		}
		if n, err := rdb.Del(ctx, tagGenKeyOf(name, "t")).Result(); err != nil || n != 1 {
			t.Fatalf("DEL the generation: %d, %v; want 1 key deleted", n, err)
		}
		version.Store("v2")
		for i, n := range nodes {
			u, err := n.GetOrLoad(ctx, "row", load)
			if err != nil || u.Name != "v2" {
				t.Fatalf("node %d: %+v, %v; want the reloaded v2", i, u, err)
			}
		}
		if got, want := loads.Load(), int64(2); got != want {
			t.Fatalf("%d loads; want %d (the first, then one reload after the generation went)", got, want)
		}
		if g, err := rdb.Get(ctx, tagGenKeyOf(name, "t")).Result(); err != nil {
			t.Fatalf("the generation after the reload: %q, %v; want one created", g, err)
		}
	})
}

// TestTagEpochDeletedDuringBatchLoad is TestTagEpochDeletedDuringLoad for a
// BatchLoader (GetOrLoadMany): the batch read the old rows, the rows change,
// another node's InvalidateTags returns and the tag epoch is deleted before
// the batch ends; no node may then serve an old row.
func TestTagEpochDeletedDuringBatchLoad(t *testing.T) {
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
				keys := []string{"a", "b", "c", "d"}
				batch := func(hold func()) tiered.BatchLoader[user] {
					return func(ctx context.Context, keys []string) (map[string]user, error) {
						m := make(map[string]user, len(keys))
						for _, k := range keys {
							m[k] = user{ID: k, Name: version.Load().(string)}
						}
						if err := tiered.SetTags(ctx, "t"); err != nil {
							return nil, err
						}
						hold()
						return m, nil
					}
				}
				read, release := make(chan struct{}), make(chan struct{})
				type result struct {
					m   map[string]user
					err error
				}
				got := make(chan result, 1)
				go func() {
					m, err := nodes[0].GetOrLoadMany(ctx, keys, batch(func() { close(read); <-release }))
					got <- result{m, err}
				}()
				<-read
				version.Store("new")
				if err := nodes[1].InvalidateTags(ctx, "t"); err != nil {
					t.Fatal(err)
				}
				if err := rdb.Del(ctx, epochKeyOf(name)).Err(); err != nil {
					t.Fatal(err)
				}
				close(release)
				if r := <-got; r.err != nil || len(r.m) != len(keys) || r.m["a"].Name != "old" {
					t.Fatalf("the raced batch's caller got %v, %v; want the %d old rows it read", r.m, r.err, len(keys))
				}
				check := func(when string) {
					t.Helper()
					stale := 0
					for i, n := range nodes {
						m, err := n.GetOrLoadMany(ctx, keys, batch(func() {}))
						if err != nil {
							t.Fatalf("node %d: %v", i, err)
						}
						for _, k := range keys {
							if m[k].Name != "new" {
								stale++
							}
						}
					}
					if stale > 0 {
						t.Fatalf("%d of %d rows served from before the InvalidateTags %s", stale, len(nodes)*len(keys), when)
					}
				}
				check("before the bus delivered")
				if bus != nil {
					bus.deliver()
					check("after the bus delivered")
				}
			})
		})
	}
}
