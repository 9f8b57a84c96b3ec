// Package loadtest_test holds the hot-key load test of DESIGN section 11: a
// benchmark only, so `make test` does not run it.
//
// Run it alone (it reads the servers' INFO counters, which other tests
// would disturb):
//
//	eval "$(test/redis.sh env)"
//	go test -run '^$' -bench HotKeys -benchtime 1x ./test/loadtest/
package loadtest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
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
)

// The scenario.
const (
	nodes      = 4                     // cache nodes in the process, each with its own client and L1s
	rate       = 12_000                // requests per second, all nodes together
	runFor     = 5 * time.Second       // open-loop run per configuration
	hotShare   = 0.15                  // share of requests on the hot keys
	hotKeys    = 5                     // hot keys; they expire together
	hotTTL     = time.Second           // RemoteTTL of the hot keys, jitter 0
	coldKeys   = 50_000                // cold keys, Zipf-distributed, in L2 before the run
	coldTTL    = time.Minute           // RemoteTTL of the cold keys (default jitter)
	zipfS      = 1.1                   // Zipf exponent of the cold keys
	loadDelay  = 50 * time.Millisecond // the slow loader
	reqTimeout = 10 * time.Second      // per request
	tick       = time.Millisecond      // dispatcher period; requests carry their exact scheduled time
)

// value is what the caches hold.
type value struct {
	Key     string `json:"key"`
	Payload string `json:"payload"`
}

var payload = strings.Repeat("x", 100)

// config is one way of running the scenario.
type config struct {
	name   string
	noL1   bool
	opts   []tiered.Option
	reason string
}

// configs are the three ways of DESIGN 11 plus full tiercache with early
// refresh, its default. Early refresh is off in the first three so the hot
// keys really expire together (with it on, every configuration reloads them
// before expiry, leases or not, and the comparison measures nothing).
var configs = []config{
	{name: "l2-only", noL1: true, opts: []tiered.Option{tiered.WithoutLeases(), tiered.WithEarlyRefresh(0)}},
	{name: "l1+l2-no-lock", opts: []tiered.Option{tiered.WithoutLeases(), tiered.WithEarlyRefresh(0)}},
	{name: "tiercache", opts: []tiered.Option{tiered.WithEarlyRefresh(0)}},
	{name: "tiercache-early-refresh", opts: nil},
}

// node is one cache node: a client, and a cache (with its own L1) for the
// hot keys and one for the cold keys.
type node struct {
	hot, cold *tiered.Cache[value]
}

func (n *node) close() {
	n.hot.Close()
	n.cold.Close()
}

func newNode(b *testing.B, client remote.Client, name string, c config) *node {
	b.Helper()
	st, err := remote.New(client)
	if err != nil {
		b.Fatal(err)
	}
	mk := func(suffix string, extra ...tiered.Option) *tiered.Cache[value] {
		var l1 tiered.Local[value]
		if !c.noL1 {
			s, err := local.New[value]()
			if err != nil {
				b.Fatal(err)
			}
			l1 = s
		}
		cache, err := tiered.New[value](name+suffix, l1, st, append(slices.Clone(c.opts), extra...)...)
		if err != nil {
			b.Fatal(err)
		}
		return cache
	}
	return &node{
		hot:  mk("-hot", tiered.WithRemoteTTL(hotTTL), tiered.WithJitter(0)),
		cold: mk("-cold", tiered.WithRemoteTTL(coldTTL)),
	}
}

// commands returns the sum of total_commands_processed over the server (the
// Cluster's primaries).
func commands(b *testing.B, client remote.Client) int64 {
	b.Helper()
	ctx := context.Background()
	parse := func(c *redis.Client) (int64, error) {
		info, err := c.Info(ctx, "stats").Result()
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
				return strconv.ParseInt(v, 10, 64)
			}
		}
		return 0, fmt.Errorf("no total_commands_processed in INFO stats of %s", c.Options().Addr)
	}
	switch c := client.(type) {
	case *redis.Client:
		n, err := parse(c)
		if err != nil {
			b.Fatal(err)
		}
		return n
	case *redis.ClusterClient:
		var sum atomic.Int64
		err := c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			n, err := parse(m)
			sum.Add(n)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		return sum.Load()
	}
	b.Fatalf("unknown client %T", client)
	return 0
}

// result is what one run measured.
type result struct {
	requests, errors   int
	hotLoads, coldLoad int64
	lat, hotLat        []time.Duration // from the scheduled send time
	redisOps           int64
	elapsed            time.Duration
}

// run builds the nodes of configuration c, fills L2 with the cold and hot
// keys, drives the open-loop load for runFor, and closes everything.
func run(b *testing.B, dep string, c config) result {
	b.Helper()
	ctx := context.Background()
	newClient := func() remote.Client {
		if dep == "cluster" {
			return redistest.Cluster(b)
		}
		return redistest.Standalone(b)
	}
	name := redistest.Name(b)
	ns := make([]*node, nodes)
	for i := range ns {
		ns[i] = newNode(b, newClient(), name, c)
	}
	defer func() {
		for _, n := range ns {
			n.close()
		}
	}()

	var hotLoads, coldLoads atomic.Int64
	loadHot := func(_ context.Context, key string) (value, error) {
		hotLoads.Add(1)
		time.Sleep(loadDelay)
		return value{Key: key, Payload: payload}, nil
	}
	loadCold := func(_ context.Context, key string) (value, error) {
		coldLoads.Add(1)
		time.Sleep(loadDelay)
		return value{Key: key, Payload: payload}, nil
	}
	hot := make([]string, hotKeys)
	for i := range hot {
		hot[i] = "hot-" + strconv.Itoa(i)
	}
	cold := make([]string, coldKeys)
	for i := range cold {
		cold[i] = "cold-" + strconv.Itoa(i)
	}

	// Fill L2 (not the nodes' L1s) through L1-less caches of the same names:
	// the cold keys so that only the hot keys' expiry causes loads, then the
	// hot keys, which all expire hotTTL later.
	admin := newClient()
	fillCold, err := newFiller(admin, name+"-cold", tiered.WithRemoteTTL(coldTTL))
	if err != nil {
		b.Fatal(err)
	}
	defer fillCold.Close()
	var wg sync.WaitGroup
	var fillErr atomic.Value
	const fillers = 32
	for w := range fillers {
		wg.Go(func() {
			for i := w; i < coldKeys; i += fillers {
				if err := fillCold.Set(ctx, cold[i], value{Key: cold[i], Payload: payload}); err != nil {
					fillErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := fillErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	fillHot, err := newFiller(admin, name+"-hot", tiered.WithRemoteTTL(hotTTL), tiered.WithJitter(0))
	if err != nil {
		b.Fatal(err)
	}
	defer fillHot.Close()
	// The hot keys are loaded (not Set) so that their entries record the
	// loader's time, as in a steady state, which early refresh needs.
	fillLoad := func(_ context.Context, key string) (value, error) {
		time.Sleep(loadDelay)
		return value{Key: key, Payload: payload}, nil
	}
	for _, k := range hot {
		wg.Go(func() {
			if _, err := fillHot.GetOrLoad(ctx, k, fillLoad); err != nil {
				fillErr.Store(err)
			}
		})
	}
	wg.Wait()
	if err, _ := fillErr.Load().(error); err != nil {
		b.Fatal(err)
	}

	// The open-loop generator: the dispatcher wakes every tick and starts,
	// each in its own goroutine, every request whose scheduled time has
	// come; latency counts from the scheduled time, so a slow dispatcher or
	// a saturated CPU shows up in it (no coordinated omission).
	total := int(rate * runFor / time.Second)
	period := time.Second / rate
	lat := make([]time.Duration, total)
	isHot := make([]bool, total)
	var errs atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, zipfS, 1, coldKeys-1)

	ops0 := commands(b, admin)
	b.StartTimer()
	start := time.Now()
	ticker := time.NewTicker(tick)
	var reqs sync.WaitGroup
	for next := 0; next < total; {
		due := min(total, int(time.Since(start)/period)+1)
		for ; next < due; next++ {
			i := next
			sched := start.Add(time.Duration(i) * period)
			n := ns[i%nodes]
			h := rng.Float64() < hotShare
			isHot[i] = h
			var key string
			if h {
				key = hot[rng.IntN(hotKeys)]
			} else {
				key = cold[zipf.Uint64()]
			}
			reqs.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, reqTimeout)
				defer cancel()
				var err error
				if h {
					_, err = n.hot.GetOrLoad(rctx, key, loadHot)
				} else {
					_, err = n.cold.GetOrLoad(rctx, key, loadCold)
				}
				lat[i] = time.Since(sched)
				if err != nil {
					errs.Add(1)
				}
			})
		}
		if next < total {
			<-ticker.C
		}
	}
	ticker.Stop()
	reqs.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	ops1 := commands(b, admin)

	r := result{
		requests: total,
		errors:   int(errs.Load()),
		hotLoads: hotLoads.Load(),
		coldLoad: coldLoads.Load(),
		redisOps: ops1 - ops0,
		elapsed:  elapsed,
		lat:      lat,
	}
	for i, h := range isHot {
		if h {
			r.hotLat = append(r.hotLat, lat[i])
		}
	}
	return r
}

// newFiller returns an L1-less cache writing the same L2 entries as the
// nodes' caches of that name.
func newFiller(client remote.Client, name string, opts ...tiered.Option) (*tiered.Cache[value], error) {
	st, err := remote.New(client)
	if err != nil {
		return nil, err
	}
	return tiered.New[value](name, nil, st, opts...)
}

func quantile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
}

// BenchmarkHotKeys is the hot-key load test of DESIGN section 11: 4 nodes,
// an open-loop load of 12k req/s for 5 s, 15 % of it on 5 hot keys that
// expire together (1 s TTL, no jitter), the rest Zipf over 50k cold keys
// already in L2, a 50 ms loader. Each configuration runs once per b.N with a
// fresh cache name; use -benchtime 1x. Reported: p50/p99 latency (all
// requests and hot-key requests), hit ratio (1 - loader calls/requests),
// loader calls, and Redis commands per second (delta of
// total_commands_processed over the run on the server or the Cluster's
// primaries; run it alone).
func BenchmarkHotKeys(b *testing.B) {
	for _, dep := range []string{"standalone", "cluster"} {
		for _, c := range configs {
			before := runtime.NumGoroutine()
			b.Run(dep+"/"+c.name, func(b *testing.B) {
				b.StopTimer()
				var all result
				for range b.N {
					r := run(b, dep, c)
					all.requests += r.requests
					all.errors += r.errors
					all.hotLoads += r.hotLoads
					all.coldLoad += r.coldLoad
					all.redisOps += r.redisOps
					all.elapsed += r.elapsed
					all.lat = append(all.lat, r.lat...)
					all.hotLat = append(all.hotLat, r.hotLat...)
				}
				if all.errors > 0 {
					b.Errorf("%d of %d requests failed", all.errors, all.requests)
				}
				loads := all.hotLoads + all.coldLoad
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(quantile(all.lat, 0.50), "p50-ms")
				b.ReportMetric(quantile(all.lat, 0.99), "p99-ms")
				b.ReportMetric(quantile(all.lat, 0.999), "p99.9-ms")
				b.ReportMetric(quantile(all.hotLat, 0.99), "hot-p99-ms")
				b.ReportMetric(1-float64(loads)/float64(all.requests), "hit-ratio")
				b.ReportMetric(float64(loads)/float64(b.N), "loads")
				b.ReportMetric(float64(all.hotLoads)/float64(b.N), "hot-loads")
				b.ReportMetric(float64(all.redisOps)/all.elapsed.Seconds(), "redis-ops/s")
				b.ReportMetric(float64(all.requests)/all.elapsed.Seconds(), "req/s")
			})
			// Every request, loader, refresh and client goroutine is gone
			// once the caches and clients are closed.
			deadline := time.Now().Add(2 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				b.Errorf("%s/%s: %d goroutines after the run, want at most %d", dep, c.name, n, before)
			}
		}
	}
}
