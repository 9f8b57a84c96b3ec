package tiered_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// TestGetMany: values from L1 and from L2 (across shards) come back, a
// cached not-found and a missing key are absent and not errors, nothing is
// loaded or leased, an invalid key is reported alone, and what L2 answered
// is in L1 afterwards.
func TestGetMany(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		name := redistest.Name(t)
		ctx := context.Background()
		a := newNode[string](t, name, rdb)
		b := newNode[string](t, name, rdb)
		for _, k := range []string{"a", "b", "c", "d"} {
			if err := a.Set(ctx, k, "v-"+k); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.GetOrLoad(ctx, "gone", func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatal(err)
		}
		// b: "a" in its L1 already, the others only in L2.
		if v, err := b.GetOrLoad(ctx, "a", func(context.Context, string) (string, error) { return "", errors.New("loaded") }); err != nil || v != "v-a" {
			t.Fatalf("warm b: %q, %v", v, err)
		}
		got, err := b.GetMany(ctx, "a", "b", "c", "d", "gone", "missing", "", "a")
		var kerrs tiered.KeyErrors
		if !errors.As(err, &kerrs) || len(kerrs) != 1 || kerrs[""] == nil {
			t.Fatalf("GetMany err = %v, want a KeyErrors naming only the empty key", err)
		}
		if len(got) != 4 {
			t.Fatalf("GetMany = %v, want a, b, c, d", got)
		}
		for _, k := range []string{"a", "b", "c", "d"} {
			if got[k] != "v-"+k {
				t.Errorf("%s = %q", k, got[k])
			}
			if v, _, ok := b.l1.Get(k); !ok || v != "v-"+k {
				t.Errorf("%s not in b's L1 after GetMany", k)
			}
		}
		if n := rdb.Exists(ctx, name+":missing").Val(); n != 0 {
			t.Error("GetMany left something (a lease?) under a missing key")
		}
		if st := b.Stats(); st.Loads != 0 || st.LeasesAcquired != 0 {
			t.Errorf("b loads %d, leases %d; want none", st.Loads, st.LeasesAcquired)
		}
	})
}
