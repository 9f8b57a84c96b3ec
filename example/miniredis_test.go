package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// TestMiniredisRunsTheCache checks that the embedded Redis supports what
// the cache sends it: GET, SET PX, SET NX GET (the lease), MGET, DEL and the
// Lua scripts of package remote (conditional fill and release) on binary
// envelopes. The "Redis < 7" case makes SET NX GET fail with a syntax
// error, as an old server does, so remote.Store takes the lease with its
// Lua fallback instead.
func TestMiniredisRunsTheCache(t *testing.T) {
	for _, tc := range []struct {
		name      string
		oldServer bool
	}{
		{"SET NX GET", false},
		{"Redis < 7 (Lua lease)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := miniredis.RunT(t)
			rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { rdb.Close() })
			old := &noSetGet{UniversalClient: rdb}
			var client remote.Client = rdb
			if tc.oldServer {
				client = old
			}
			// Each node has its own L1 and shares the L2.
			node := func() *tiered.Cache[string] {
				l1, err := local.New[string]()
				if err != nil {
					t.Fatal(err)
				}
				l2, err := remote.New(client)
				if err != nil {
					t.Fatal(err)
				}
				c, err := tiered.New("compat", l1, l2)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			var loads atomic.Int64
			load := func(ctx context.Context, key string) (string, error) {
				loads.Add(1)
				if key == "gone" {
					return "", tiered.ErrNotFound
				}
				return "v-" + key, nil
			}
			loadMany := func(ctx context.Context, keys []string) (map[string]string, error) {
				loads.Add(1)
				out := map[string]string{}
				for _, k := range keys {
					out[k] = "v-" + k
				}
				return out, nil
			}
			ctx := t.Context()
			a, b := node(), node()

			for _, c := range []*tiered.Cache[string]{a, b} { // b reads a's fill from L2
				if v, err := c.GetOrLoad(ctx, "k", load); v != "v-k" || err != nil {
					t.Fatalf("GetOrLoad(k) = %q, %v; want v-k", v, err)
				}
				if _, err := c.GetOrLoad(ctx, "gone", load); !errors.Is(err, tiered.ErrNotFound) {
					t.Fatalf("GetOrLoad(gone) error = %v, want ErrNotFound", err)
				}
			}
			if n := loads.Load(); n != 2 {
				t.Errorf("%d loads after two nodes read two keys, want 2", n)
			}
			if err := a.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			got, err := node().GetOrLoadMany(ctx, []string{"k", "gone", "j"}, loadMany)
			if err != nil || got["k"] != "v-k" || got["j"] != "v-j" || len(got) != 2 {
				t.Errorf("GetOrLoadMany = %v, %v; want k and j", got, err)
			}
			if n := loads.Load(); n != 3 {
				t.Errorf("%d loads after the batch, want 3", n)
			}
			for name, c := range map[string]*tiered.Cache[string]{"a": a, "b": b} {
				if st := c.Stats(); st.L2Errors != 0 || st.HandledErrors != 0 || st.FillsRejected != 0 {
					t.Errorf("node %s: stats %+v, want no L2 errors and no rejected fills", name, st)
				}
			}
			if tc.oldServer && old.rejected.Load() == 0 {
				t.Error("SET NX GET was never sent: the Lua fallback was not exercised")
			}
		})
	}
}

// noSetGet is a client that fails SET ... GET with a syntax error, like a
// Redis server older than 7.0.
type noSetGet struct {
	redis.UniversalClient
	rejected atomic.Int64
}

func (c *noSetGet) SetArgs(ctx context.Context, key string, value any, a redis.SetArgs) *redis.StatusCmd {
	if a.Get {
		c.rejected.Add(1)
		cmd := redis.NewStatusCmd(ctx, "set", key, value)
		cmd.SetErr(syntaxError{})
		return cmd
	}
	return c.UniversalClient.SetArgs(ctx, key, value, a)
}

// syntaxError is the reply of an old server to SET NX GET.
type syntaxError struct{}

func (syntaxError) Error() string { return "ERR syntax error" }
func (syntaxError) RedisError()   {}
