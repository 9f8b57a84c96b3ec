package tiered_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// BenchmarkSetMany writes 100 keys with one SetMany against 100 Sets, on
// the standalone server and on the Cluster (L2 only, no bus).
func BenchmarkSetMany(b *testing.B) {
	for _, d := range []struct {
		name   string
		client func(testing.TB) redis.UniversalClient
	}{
		{"standalone", func(tb testing.TB) redis.UniversalClient { return redistest.Standalone(tb) }},
		{"cluster", func(tb testing.TB) redis.UniversalClient { return redistest.Cluster(tb) }},
	} {
		ctx := context.Background()
		st, err := remote.New(d.client(b))
		if err != nil {
			b.Fatal(err)
		}
		c, err := tiered.New[user](redistest.Name(b), nil, st)
		if err != nil {
			b.Fatal(err)
		}
		items := make(map[string]user, 100)
		for i := range 100 {
			k := strconv.Itoa(i)
			items[k] = user{ID: k, Name: "name-" + k}
		}
		b.Run(d.name+"/SetMany-100", func(b *testing.B) {
			for b.Loop() {
				if err := c.SetMany(ctx, items); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(d.name+"/Set-x100", func(b *testing.B) {
			for b.Loop() {
				for k, v := range items {
					if err := c.Set(ctx, k, v); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		c.Close()
	}
}

// BenchmarkTaggedL2Hit reads one value from L2 (no L1), untagged and with
// one tag: the tag costs one more round trip (its generation).
func BenchmarkTaggedL2Hit(b *testing.B) {
	ctx := context.Background()
	st, err := remote.New(redistest.Standalone(b))
	if err != nil {
		b.Fatal(err)
	}
	c, err := tiered.New[user](redistest.Name(b), nil, st, tiered.WithEarlyRefresh(0))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "plain", user{ID: "plain"}); err != nil {
		b.Fatal(err)
	}
	if err := c.Set(ctx, "tagged", user{ID: "tagged"}, tiered.Tags("t")); err != nil {
		b.Fatal(err)
	}
	for _, k := range []string{"plain", "tagged"} {
		b.Run(k, func(b *testing.B) {
			for b.Loop() {
				if _, ok, err := c.Get(ctx, k); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
