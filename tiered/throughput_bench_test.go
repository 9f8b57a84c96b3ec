package tiered_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

const (
	// throughputKeys is the number of keys each throughput block reads. It
	// is a multiple of every goroutine count, so that goroutine g reads only
	// keys g, g+G, g+2G...: no two goroutines share a key, and tiercache's
	// per-key single flight never merges two reads into one Redis command.
	throughputKeys = 1024
	// throughputOps is the number of reads in one block, split evenly over
	// the goroutines.
	throughputOps = 16384
	// throughputRounds is the number of tiercache/raw block pairs measured.
	throughputRounds = 5
)

// BenchmarkThroughputL2Hit measures the throughput of L2 hits under
// concurrency: G goroutines (64 and 256) call GetOrLoad on an L2-only cache
// (nil L1, so a hit is one SET NX GET) for keys already in L2, against the same G goroutines running a raw go-redis GET of the same
// keys and bytes on the same client. It runs on the standalone server and
// the Cluster, on the plain client and on go-redis's blocking auto-pipeliner
// (Client.AutoPipeline, ClusterClient.AutoPipeline), which tiercache takes
// as its remote client like any other.
//
// Each round is a block of throughputOps reads through tiercache and one
// through the raw client, in alternating order, so that drift in a shared
// machine's load hits both alike. It reports the median ops/s of each, and
// the median and range of the per-round ratio tiercache/raw (1 means as fast
// as the raw client). One iteration does all the rounds: run it with
// -benchtime=1x.
//
// The cache runs with WithRemoteTimeout(0), as the raw client has no
// per-call deadline either: with the default 100 ms, 256 goroutines queued
// for the Cluster client's default pool (10 connections per CPU per node)
// exceed it, the breaker opens and reads go to the loader, which this
// benchmark reports as a failure (it counts loader calls).
func BenchmarkThroughputL2Hit(b *testing.B) {
	for _, dep := range []string{"standalone", "cluster"} {
		b.Run(dep, func(b *testing.B) {
			for _, mode := range []string{"plain", "autopipeline"} {
				b.Run(mode, func(b *testing.B) {
					for _, g := range []int{64, 256} {
						b.Run("G"+strconv.Itoa(g), func(b *testing.B) {
							rdb := throughputClient(b, dep, mode)
							benchThroughput(b, rdb, g)
						})
					}
				})
			}
		})
	}
}

// throughputClient returns the client of the deployment, or its blocking
// auto-pipeliner in mode "autopipeline"; both are closed when b ends.
func throughputClient(b *testing.B, dep, mode string) remote.Client {
	var (
		ap  *redis.AutoPipeliner
		err error
	)
	switch {
	case mode == "plain":
		return benchClient(b, dep)
	case dep == "cluster":
		ap, err = redistest.Cluster(b).AutoPipeline()
	default:
		ap, err = redistest.Standalone(b).AutoPipeline()
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ap.Close() })
	return ap
}

// benchThroughput runs the rounds of BenchmarkThroughputL2Hit with g
// goroutines on rdb and reports their figures.
func benchThroughput(b *testing.B, rdb remote.Client, g int) {
	ctx := context.Background()
	st, err := remote.New(rdb)
	if err != nil {
		b.Fatal(err)
	}
	name := redistest.Name(b)
	c, err := tiered.New[user](name, nil, st, tiered.WithRemoteTimeout(0))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	keys := make([]string, throughputKeys)
	full := make([]string, throughputKeys)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
		full[i] = name + ":" + keys[i]
		if err := c.Set(ctx, keys[i], user{ID: keys[i], Name: "a hot user"}); err != nil {
			b.Fatal(err)
		}
	}
	var loads atomic.Int64
	load := func(_ context.Context, key string) (user, error) {
		loads.Add(1)
		return user{ID: key}, nil
	}
	ours := func(i int) error {
		v, err := c.GetOrLoad(ctx, keys[i], load)
		if err == nil && v.ID != keys[i] {
			b.Errorf("GetOrLoad(%q) = %+v", keys[i], v)
		}
		return err
	}
	raw := func(i int) error {
		v, err := rdb.Get(ctx, full[i]).Bytes()
		if err == nil && len(v) == 0 {
			b.Errorf("GET %q: empty value", full[i])
		}
		return err
	}
	// Warm both (connections, pipeliner goroutines) outside the timing.
	for _, f := range []func(int) error{ours, raw} {
		if _, err := throughputBlock(g, f); err != nil {
			b.Fatal(err)
		}
	}
	var ourRates, rawRates, ratios []float64
	for b.Loop() {
		for r := range throughputRounds {
			first, second := ours, raw
			if r%2 == 1 {
				first, second = raw, ours
			}
			a, err := throughputBlock(g, first)
			if err != nil {
				b.Fatal(err)
			}
			z, err := throughputBlock(g, second)
			if err != nil {
				b.Fatal(err)
			}
			if r%2 == 1 {
				a, z = z, a
			}
			ourRates, rawRates, ratios = append(ourRates, a), append(rawRates, z), append(ratios, a/z)
		}
	}
	if n := loads.Load(); n != 0 {
		b.Fatalf("the loader ran %d times: not every read was an L2 hit", n)
	}
	slices.Sort(ratios)
	b.ReportMetric(median(ourRates), "tiercache-ops/s")
	b.ReportMetric(median(rawRates), "raw-ops/s")
	b.ReportMetric(median(ratios), "ratio-median")
	b.ReportMetric(ratios[0], "ratio-min")
	b.ReportMetric(ratios[len(ratios)-1], "ratio-max")
}

// throughputBlock runs throughputOps calls of read over g goroutines, each
// on its own keys, and returns the calls per second of wall time.
func throughputBlock(g int, read func(i int) error) (float64, error) {
	per := throughputOps / g
	var (
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	t0 := time.Now()
	for w := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range per {
				if err := read(w + g*(n%(throughputKeys/g))); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if err := first.Load(); err != nil {
		return 0, *err
	}
	return float64(per*g) / elapsed.Seconds(), nil
}

// median returns the median of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}
