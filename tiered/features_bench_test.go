package tiered_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// interleave runs a and b alternately in one loop and reports each one's
// mean time and b/a: on a noisy machine the ratio is what holds.
func interleave(b *testing.B, an, bn string, a, bf func()) {
	var ta, tb time.Duration
	n := 0
	for b.Loop() {
		s := time.Now()
		a()
		ta += time.Since(s)
		s = time.Now()
		bf()
		tb += time.Since(s)
		n++
	}
	b.ReportMetric(float64(ta.Nanoseconds())/float64(n), an+"-ns/op")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(n), bn+"-ns/op")
	b.ReportMetric(float64(tb)/float64(ta), bn+"/"+an)
}

// BenchmarkSetMany writes 100 keys with one SetMany and with 100 Sets,
// interleaved, on the standalone server and on the Cluster (L2 only, no
// bus).
func BenchmarkSetMany(b *testing.B) {
	for _, d := range []struct {
		name   string
		client func(testing.TB) redis.UniversalClient
	}{
		{"standalone", func(tb testing.TB) redis.UniversalClient { return redistest.Standalone(tb) }},
		{"cluster", func(tb testing.TB) redis.UniversalClient { return redistest.Cluster(tb) }},
	} {
		b.Run(d.name, func(b *testing.B) {
			ctx := context.Background()
			st, err := remote.New(d.client(b))
			if err != nil {
				b.Fatal(err)
			}
			c, err := tiered.New[user](redistest.Name(b), nil, st)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			items := make(map[string]user, 100)
			for i := range 100 {
				k := strconv.Itoa(i)
				items[k] = user{ID: k, Name: "name-" + k}
			}
			interleave(b, "SetMany", "Setx100", func() {
				if err := c.SetMany(ctx, items); err != nil {
					b.Fatal(err)
				}
			}, func() {
				for k, v := range items {
					if err := c.Set(ctx, k, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkTaggedL2Hit reads a value from L2 (no L1), untagged and with one
// tag, interleaved: the tag costs one more round trip (its generation).
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
	get := func(k string) func() {
		return func() {
			if _, ok, err := c.Get(ctx, k); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	}
	interleave(b, "plain", "tagged", get("plain"), get("tagged"))
}
