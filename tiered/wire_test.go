package tiered_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// wireTap is a go-redis hook recording each round trip as the names of the
// commands it carried. The bus's own traffic on the client (announcements,
// heartbeats: round trips of nothing but PUBLISH/SPUBLISH) and connection
// and topology commands are left out; a PUBLISH riding with a write stays.
type wireTap struct {
	mu    sync.Mutex
	trips [][]string
}

func (w *wireTap) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w *wireTap) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
			w.add([]redis.Cmder{cmd}) // a NOSCRIPT is retried as EVAL: count that one
		}
		return err
	}
}

func (w *wireTap) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		w.add(cmds)
		return err
	}
}

func (w *wireTap) add(cmds []redis.Cmder) {
	var names []string
	onlyBus := true
	for _, c := range cmds {
		name := strings.ToLower(fmt.Sprint(c.Args()[0]))
		switch name {
		case "hello", "client", "cluster", "ping":
			continue
		case "set":
			for _, a := range c.Args()[3:] {
				if s, ok := a.(string); ok && strings.EqualFold(s, "nx") {
					name = "set-nx-get"
				}
			}
		}
		if name != "publish" && name != "spublish" {
			onlyBus = false
		}
		names = append(names, name)
	}
	if len(names) == 0 || onlyBus {
		return
	}
	w.mu.Lock()
	w.trips = append(w.trips, names)
	w.mu.Unlock()
}

func (w *wireTap) take() [][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.trips
	w.trips = nil
	return t
}

// TestWireCost pins what each public operation sends to Redis (DESIGN §6.1,
// issue 19): a cold GetOrLoad is the read-or-lease and the fill, two
// commands in two round trips, as an unlocked GET then SET; an L2 hit one
// command; a Set and a one-key Delete one round trip carrying the write and
// its invalidation; a cold GetOrLoadMany two round trips per node.
func TestWireCost(t *testing.T) {
	for _, d := range []struct {
		name string
		dial func(t *testing.T) redis.UniversalClient
	}{
		{"standalone", func(t *testing.T) redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t)})
		}},
		{"cluster", func(t *testing.T) redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
		}},
	} {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			name := redistest.Name(t)
			nodes := make([]*tiered.Cache[string], 2)
			taps := make([]*wireTap, 2)
			for i := range nodes {
				rdb := d.dial(t)
				t.Cleanup(func() { rdb.Close() })
				taps[i] = &wireTap{}
				if cc, ok := rdb.(*redis.ClusterClient); ok {
					// On the node clients: a Cluster pipeline is one round
					// trip per node, and carried writes go to a node's
					// client directly.
					tap := taps[i]
					cc.OnNewNode(func(n *redis.Client) { n.AddHook(tap) })
				} else {
					rdb.AddHook(taps[i])
				}
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
				nodes[i], err = tiered.New[string](name, l1, st, tiered.WithInvalidation(bus), tiered.WithRemoteTimeout(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { nodes[i].Close() })
			}
			a, b := nodes[0], nodes[1]
			load := func(_ context.Context, key string) (string, error) { return "v-" + key, nil }
			// Warm the scripts' cache on every server: a first EVALSHA
			// costs a NOSCRIPT and an EVAL once per server and script.
			for i := range 40 {
				if _, err := a.GetOrLoad(ctx, fmt.Sprint("warm", i), load); err != nil {
					t.Fatal(err)
				}
			}
			taps[0].take()
			check := func(what string, tap *wireTap, want [][]string) {
				t.Helper()
				got := tap.take()
				if !slices.EqualFunc(got, want, slices.Equal[[]string]) {
					t.Errorf("%s sent %v (%d round trips); want %v", what, got, len(got), want)
				} else {
					t.Logf("%s: %d round trips %v", what, len(got), got)
				}
			}
			if _, err := a.GetOrLoad(ctx, "k", load); err != nil {
				t.Fatal(err)
			}
			check("cold GetOrLoad", taps[0], [][]string{{"set-nx-get"}, {"evalsha"}})
			taps[1].take()
			if v, err := b.GetOrLoad(ctx, "k", load); err != nil || v != "v-k" {
				t.Fatalf("L2 hit = %q, %v", v, err)
			}
			check("GetOrLoad L2 hit", taps[1], [][]string{{"set-nx-get"}})
			if _, ok, err := b.Get(ctx, "k"); err != nil || !ok {
				t.Fatalf("L1 hit: %v %v", ok, err)
			}
			check("Get L1 hit", taps[1], nil)
			pub := "publish"
			if d.name == "cluster" {
				pub = "spublish"
			}
			if err := a.Set(ctx, "k", "new"); err != nil {
				t.Fatal(err)
			}
			check("Set", taps[0], [][]string{{"eval", pub}}) // the fenced SET, carried with its publish
			if err := a.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			check("Delete of one key", taps[0], [][]string{{"del", pub}})
			// A cold batch: read-or-lease, then the fills, each one
			// pipeline per node.
			keys := []string{"{b}1", "{b}2", "{b}3", "{b}4"}
			got, err := a.GetOrLoadMany(ctx, keys, func(_ context.Context, ks []string) (map[string]string, error) {
				out := map[string]string{}
				for _, k := range ks {
					out[k] = "v"
				}
				return out, nil
			})
			if err != nil || len(got) != len(keys) {
				t.Fatalf("GetOrLoadMany = %v, %v", got, err)
			}
			four := func(cmd string) []string { return []string{cmd, cmd, cmd, cmd} }
			check("cold GetOrLoadMany of 4 keys of one slot", taps[0], [][]string{four("set-nx-get"), four("evalsha")})
		})
	}
}
