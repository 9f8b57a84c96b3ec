package tiered_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// benchClient returns a client of the deployment, closed when b ends.
func benchClient(b *testing.B, dep string) remote.Client {
	if dep == "cluster" {
		return redistest.Cluster(b)
	}
	return redistest.Standalone(b)
}

// BenchmarkMissInterleaved measures a cold miss with an instant loader, with
// leases (read-or-lease, fill) and without (GET, SET), on the standalone
// server and the Cluster. Both caches run in one loop, alternating which
// goes first, so that drift in a shared machine's load hits both alike; it
// reports the mean of each and their ratio (run it with -count for a median
// and a range of the ratio).
func BenchmarkMissInterleaved(b *testing.B) {
	ctx := context.Background()
	load := func(_ context.Context, key string) (user, error) { return user{ID: key}, nil }
	for _, dep := range []string{"standalone", "cluster"} {
		b.Run(dep, func(b *testing.B) {
			st, err := remote.New(benchClient(b, dep))
			if err != nil {
				b.Fatal(err)
			}
			name := redistest.Name(b)
			plain, err := tiered.New[user](name+"-plain", nil, st, tiered.WithoutLeases())
			if err != nil {
				b.Fatal(err)
			}
			defer plain.Close()
			leased, err := tiered.New[user](name+"-leased", nil, st)
			if err != nil {
				b.Fatal(err)
			}
			defer leased.Close()
			// Warm both paths (connections, script cache) outside the timing.
			for _, c := range []*tiered.Cache[user]{plain, leased} {
				if _, err := c.GetOrLoad(ctx, "warm", load); err != nil {
					b.Fatal(err)
				}
			}
			var plainNs, leasedNs time.Duration
			timed := func(c *tiered.Cache[user], key string) time.Duration {
				t0 := time.Now()
				if _, err := c.GetOrLoad(ctx, key, load); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			i := 0
			for b.Loop() {
				i++
				key := strconv.Itoa(i)
				if i%2 == 0 {
					plainNs += timed(plain, key)
					leasedNs += timed(leased, key)
				} else {
					leasedNs += timed(leased, key)
					plainNs += timed(plain, key)
				}
			}
			b.ReportMetric(float64(plainNs.Nanoseconds())/float64(b.N), "without-leases-ns/op")
			b.ReportMetric(float64(leasedNs.Nanoseconds())/float64(b.N), "leases-ns/op")
			b.ReportMetric(float64(leasedNs)/float64(plainNs), "ratio")
		})
	}
}

// BenchmarkL2HitAllocs reports, one operation per sub-benchmark, the
// allocations of a sequential L2 hit (no L1) through Get and GetOrLoad and
// of a raw go-redis GET of the same bytes, on the standalone server and the
// Cluster. Its times are not interleaved: take the ratios from
// BenchmarkL2Hit or test/peers.
func BenchmarkL2HitAllocs(b *testing.B) {
	ctx := context.Background()
	noLoad := func(context.Context, string) (user, error) {
		b.Fatal("loader called on an L2 hit")
		return user{}, nil
	}
	for _, dep := range []string{"standalone", "cluster"} {
		b.Run(dep, func(b *testing.B) {
			rdb := benchClient(b, dep)
			st, err := remote.New(rdb)
			if err != nil {
				b.Fatal(err)
			}
			name := redistest.Name(b)
			c, err := tiered.New[user](name, nil, st)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if err := c.Set(ctx, "hot", user{ID: "hot", Name: "a hot user"}); err != nil {
				b.Fatal(err)
			}
			raw, err := rdb.Get(ctx, name+":hot").Bytes()
			if err != nil {
				b.Fatal(err)
			}
			if err := rdb.Set(ctx, name+":raw", raw, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
			b.Run("go-redis-GET", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := rdb.Get(ctx, name+":raw").Bytes(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("tiercache-Get", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, ok, err := c.Get(ctx, "hot"); !ok || err != nil {
						b.Fatal(ok, err)
					}
				}
			})
			b.Run("tiercache-GetOrLoad", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.GetOrLoad(ctx, "hot", noLoad); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
