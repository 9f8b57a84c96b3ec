package tiered_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// l1OnlyCache returns an L1-only cache holding key "hot".
func l1OnlyCache(tb testing.TB, opts ...tiered.Option) *tiered.Cache[user] {
	tb.Helper()
	l1, err := local.New[user]()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := tiered.New[user]("bench", l1, nil, append(opts, tiered.WithLocalTTL(time.Hour))...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	if err := c.Set(context.Background(), "hot", user{ID: "hot", Name: "a hot user"}); err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestL1HitDoesNotAllocate(t *testing.T) {
	c := l1OnlyCache(t)
	ctx := context.Background()
	load := func(context.Context, string) (user, error) { return user{}, nil }
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := c.GetOrLoad(ctx, "hot", load); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("GetOrLoad L1 hit allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok, _ := c.Get(ctx, "hot"); !ok {
			t.Fatal("miss")
		}
	}); n != 0 {
		t.Errorf("Get L1 hit allocates %v times, want 0", n)
	}
}

// BenchmarkL1Hit compares a parallel L1 hit through the cache with a raw
// ristretto v2 Get of the same value in the same run. The baseline stores a
// pointer, as package local does (a struct value would take ristretto's
// slower generic path and flatter the comparison).
func BenchmarkL1Hit(b *testing.B) {
	ctx := context.Background()
	b.Run("ristretto", func(b *testing.B) {
		rc, err := ristretto.NewCache(&ristretto.Config[string, *user]{NumCounters: 1e6, MaxCost: 1e5, BufferItems: 64})
		if err != nil {
			b.Fatal(err)
		}
		defer rc.Close()
		rc.SetWithTTL("hot", &user{ID: "hot", Name: "a hot user"}, 1, time.Hour)
		rc.Wait()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, ok := rc.Get("hot"); !ok {
					b.Fatal("miss")
				}
			}
		})
	})
	b.Run("tiercache-Get", func(b *testing.B) {
		c := l1OnlyCache(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, ok, _ := c.Get(ctx, "hot"); !ok {
					b.Fatal("miss")
				}
			}
		})
	})
	sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer sdk.Shutdown(ctx)
	providers := []struct {
		name string
		opts []tiered.Option
	}{
		{"global", nil},
		{"noop", []tiered.Option{tiered.WithMeterProvider(noop.NewMeterProvider())}},
		{"sdk", []tiered.Option{tiered.WithMeterProvider(sdk)}},
	}
	for _, p := range providers {
		b.Run("tiercache-GetOrLoad-"+p.name+"-provider", func(b *testing.B) {
			c := l1OnlyCache(b, p.opts...)
			load := func(context.Context, string) (user, error) { return user{}, nil }
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.GetOrLoad(ctx, "hot", load); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkL2Hit compares a sequential L2 hit (L1 disabled) with a raw
// go-redis GET of the same bytes on the same server.
func BenchmarkL2Hit(b *testing.B) {
	rdb := redistest.Standalone(b)
	ctx := context.Background()
	name := redistest.Name(b)
	st, err := remote.New(rdb)
	if err != nil {
		b.Fatal(err)
	}
	c, err := tiered.New[user](name, nil, st)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// The same without the per-call deadline, and with a no-op meter.
	lean, err := tiered.New[user](name, nil, st, tiered.WithRemoteTimeout(0),
		tiered.WithMeterProvider(noop.NewMeterProvider()))
	if err != nil {
		b.Fatal(err)
	}
	defer lean.Close()
	if err := c.Set(ctx, "hot", user{ID: "hot", Name: "a hot user"}); err != nil {
		b.Fatal(err)
	}
	raw, err := rdb.Get(ctx, name+":hot").Bytes()
	if err != nil {
		b.Fatal(err)
	}
	rdb.Set(ctx, name+":raw", raw, time.Hour)
	// Both in one loop, alternating, so drift in a shared machine's load
	// hits both alike; reports the mean of each and their ratio.
	for _, v := range []struct {
		name  string
		cache *tiered.Cache[user]
	}{{"interleaved-default", c}, {"interleaved-no-deadline", lean}} {
		b.Run(v.name, func(b *testing.B) {
			var rawNs, ourNs time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				if _, err := rdb.Get(ctx, name+":raw").Bytes(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, ok, err := v.cache.Get(ctx, "hot"); !ok || err != nil {
					b.Fatal(ok, err)
				}
				rawNs += t1.Sub(t0)
				ourNs += time.Since(t1)
			}
			b.ReportMetric(float64(rawNs.Nanoseconds())/float64(b.N), "raw-ns/op")
			b.ReportMetric(float64(ourNs.Nanoseconds())/float64(b.N), "tiercache-ns/op")
			b.ReportMetric(float64(ourNs)/float64(rawNs), "ratio")
		})
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
}

// BenchmarkMiss measures a cold miss with an instant loader: with leases
// (read-or-lease SET NX GET, conditional fill: 2 round trips) and without
// (GET, SET: 2 round trips), on the standalone server.
func BenchmarkMiss(b *testing.B) {
	rdb := redistest.Standalone(b)
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		opts []tiered.Option
	}{
		{"plain-miss", []tiered.Option{tiered.WithoutLeases()}},
		{"leased-miss", nil},
	} {
		b.Run(mode.name, func(b *testing.B) {
			st, _ := remote.New(rdb)
			c, err := tiered.New[user](redistest.Name(b), nil, st, mode.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			load := func(_ context.Context, key string) (user, error) { return user{ID: key}, nil }
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := c.GetOrLoad(ctx, strconv.Itoa(i), load); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStampede: 8 nodes x 64 goroutines ask one cold key at once, the
// loader takes 20 ms. Reports loader calls and the p99 caller latency, for
// full tiercache and for per-node singleflight only (WithoutLeases).
func BenchmarkStampede(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts []tiered.Option
	}{
		{"singleflight-only", []tiered.Option{tiered.WithoutLeases()}},
		{"tiercache", nil},
	} {
		for _, dep := range []string{"standalone", "cluster"} {
			b.Run(mode.name+"/"+dep, func(b *testing.B) {
				name := redistest.Name(b)
				nodes := make([]*tiered.Cache[user], 8)
				for i := range nodes {
					var rdb remote.Client = redistest.Standalone(b)
					if dep == "cluster" {
						rdb = redistest.Cluster(b)
					}
					st, _ := remote.New(rdb)
					l1, _ := local.New[user]()
					c, err := tiered.New[user](name, l1, st, mode.opts...)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					nodes[i] = c
				}
				var calls atomic.Int64
				load := func(_ context.Context, key string) (user, error) {
					calls.Add(1)
					time.Sleep(20 * time.Millisecond)
					return user{ID: key}, nil
				}
				var lat []time.Duration
				var mu sync.Mutex
				round := 0
				for b.Loop() {
					round++
					key := "cold-" + strconv.Itoa(round)
					start := make(chan struct{})
					var wg sync.WaitGroup
					for _, n := range nodes {
						for range 64 {
							wg.Go(func() {
								<-start
								t0 := time.Now()
								if _, err := n.GetOrLoad(context.Background(), key, load); err != nil {
									b.Error(err)
								}
								d := time.Since(t0)
								mu.Lock()
								lat = append(lat, d)
								mu.Unlock()
							})
						}
					}
					close(start)
					wg.Wait()
				}
				slices.Sort(lat)
				b.ReportMetric(float64(calls.Load())/float64(round), "loads/key")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			})
		}
	}
}

// BenchmarkGetOrLoadManyCold: 100 cold keys in one call (leases and fills
// for each), on the standalone server and the Cluster.
func BenchmarkGetOrLoadManyCold(b *testing.B) {
	for _, dep := range []string{"standalone", "cluster"} {
		b.Run(dep, func(b *testing.B) {
			var rdb remote.Client = redistest.Standalone(b)
			if dep == "cluster" {
				rdb = redistest.Cluster(b)
			}
			st, _ := remote.New(rdb)
			c, err := tiered.New[user](redistest.Name(b), nil, st)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			load := func(_ context.Context, keys []string) (map[string]user, error) {
				out := make(map[string]user, len(keys))
				for _, k := range keys {
					out[k] = user{ID: k}
				}
				return out, nil
			}
			ctx := context.Background()
			keys := make([]string, 100)
			round := 0
			b.ReportAllocs()
			for b.Loop() {
				round++
				for i := range keys {
					keys[i] = strconv.Itoa(round) + ":" + strconv.Itoa(i)
				}
				if m, err := c.GetOrLoadMany(ctx, keys, load); err != nil || len(m) != len(keys) {
					b.Fatal(len(m), err)
				}
			}
		})
	}
}
