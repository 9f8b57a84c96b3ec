// Package loadtest_test holds the hot-key load test of the design (12k req/s,
// 15 % on hot keys that expire together, a long tail on the rest): a
// benchmark, which `make test` does not run; TestHotKeysSmoke runs a tiny
// version of it so that it keeps working.
//
// Run it alone (it reads the servers' INFO counters, which other tests
// would disturb); it takes about two minutes:
//
//	eval "$(test/redis.sh env)"
//	go test -run '^$' -bench HotKeys -benchtime 1x -timeout 20m ./test/loadtest/
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

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// The fixed part of the scenario.
const (
	nodes       = 4                     // cache nodes in the process, each with its own client and L1s
	hotShare    = 0.15                  // share of requests on the hot keys
	hotKeys     = 5                     // hot keys; they expire together
	hotTTL      = time.Second           // RemoteTTL of the hot keys, jitter 0
	coldTTL     = time.Minute           // RemoteTTL of the cold keys (default jitter)
	zipfS       = 1.1                   // Zipf exponent of the cold keys
	loadDelay   = 30 * time.Millisecond // the loader (a database query)
	reqTimeout  = 10 * time.Second      // per request
	tick        = time.Millisecond      // dispatcher period; requests carry their exact scheduled time
	setupBudget = 10 * time.Second      // remote and load timeouts of the warm-up fill (never the 100 ms default)
)

// scenario is the size of one run.
type scenario struct {
	rate     int           // requests per second, all nodes together
	runFor   time.Duration // open-loop run per configuration
	coldKeys int           // cold keys, Zipf-distributed over this many
	prefill  int           // the most popular cold keys put in L2 before the run
	l1Max    int64         // L1 entries per node and cache: far fewer than coldKeys
}

// full is the benchmark: 12k req/s for 5 s, a tail of 1M keys of which the
// 20k most popular (about 85 % of the tail's requests) are in L2 before the
// run, an L1 of 10k entries per node.
var full = scenario{rate: 12_000, runFor: 5 * time.Second, coldKeys: 1_000_000, prefill: 20_000, l1Max: 10_000}

// smoke is the same at toy size, for TestHotKeysSmoke.
var smoke = scenario{rate: 400, runFor: 300 * time.Millisecond, coldKeys: 10_000, prefill: 200, l1Max: 100}

// value is what the caches hold.
type value struct {
	Key     string `json:"key"`
	Payload string `json:"payload"`
}

var payload = strings.Repeat("x", 100)

// config is one way of running the scenario.
type config struct {
	name string
	noL1 bool
	opts []tiered.Option
}

// configs are the three ways of the design's load test plus full tiercache
// with early refresh, its default. Early refresh is off in the first three so the hot
// keys really expire together (with it on, every configuration reloads them
// before expiry, leases or not, and the comparison measures nothing).
var configs = []config{
	{name: "l2-only", noL1: true, opts: []tiered.Option{tiered.WithoutLeases(), tiered.WithEarlyRefresh(0)}},
	{name: "l1+l2-no-lock", opts: []tiered.Option{tiered.WithoutLeases(), tiered.WithEarlyRefresh(0)}},
	{name: "tiercache", opts: []tiered.Option{tiered.WithEarlyRefresh(0)}},
	{name: "tiercache-early-refresh", opts: nil},
}

// handledErrors counts the errors the nodes' caches handled themselves.
var handledErrors atomic.Int64

// node is one cache node: a client, and a cache (with its own L1) for the
// hot keys and one for the cold keys.
type node struct {
	hot, cold *tiered.Cache[value]
}

func (n *node) close() {
	n.hot.Close()
	n.cold.Close()
}

func newNode(b testing.TB, client remote.Client, name string, c config, sc scenario) *node {
	b.Helper()
	st, err := remote.New(client)
	if err != nil {
		b.Fatal(err)
	}
	mk := func(suffix string, extra ...tiered.Option) *tiered.Cache[value] {
		var l1 driver.Local[value]
		if !c.noL1 {
			s, err := local.New[value](local.WithMaxEntries(sc.l1Max))
			if err != nil {
				b.Fatal(err)
			}
			l1 = s
		}
		// Errors the cache absorbs (an L2 timeout on a busy machine) are
		// counted, not logged one by one.
		quiet := tiered.WithErrorHandler(func(context.Context, error) { handledErrors.Add(1) })
		cache, err := tiered.New[value](name+suffix, l1, st, append(append(slices.Clone(c.opts), quiet), extra...)...)
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

// result is what one run measured.
type result struct {
	requests, errors   int
	fillErrors         int64 // warm-up writes that failed even with setupBudget (logged, not fatal)
	hotLoads, coldLoad int64
	lat, hotLat        []time.Duration // from the scheduled send time
	redisOps           int64           // commands the servers ran (total_commands_processed; a script's inner commands count)
	redisCPU           float64         // seconds of server CPU (used_cpu_sys + used_cpu_user)
	sent               wireCounts      // what the nodes' clients sent
	elapsed            time.Duration
}

// run builds the nodes of configuration c, fills L2 with the cold and hot
// keys, drives the open-loop load for runFor, and closes everything.
func run(b testing.TB, dep string, c config, sc scenario) result {
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
	wires := make([]*wireCounter, nodes)
	for i := range ns {
		wires[i] = &wireCounter{}
		ns[i] = newNode(b, countedClient(b, dep, wires[i]), name, c, sc)
	}
	sent := func() wireCounts {
		var w wireCounts
		for _, c := range wires {
			w = w.add(c.snapshot())
		}
		return w
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
	cold := make([]string, sc.coldKeys)
	for i := range cold {
		cold[i] = "cold-" + strconv.Itoa(i)
	}

	// Fill L2 (not the nodes' L1s) through L1-less caches of the same names,
	// with generous timeouts of their own (a busy machine must not fail the
	// warm-up): the most popular cold keys, as a warm L2 would hold them,
	// then the hot keys, which all expire hotTTL later. A write that fails
	// anyway is counted and logged; it only makes that key a miss.
	admin := newClient()
	setup := []tiered.Option{tiered.WithRemoteTimeout(setupBudget), tiered.WithLoadTimeout(setupBudget)}
	fillCold, err := newFiller(admin, name+"-cold", append(setup, tiered.WithRemoteTTL(coldTTL))...)
	if err != nil {
		b.Fatal(err)
	}
	defer fillCold.Close()
	var wg sync.WaitGroup
	var fillErrs atomic.Int64
	var lastFillErr atomic.Value
	fillFailed := func(err error) {
		fillErrs.Add(1)
		lastFillErr.Store(err)
	}
	const fillers = 32
	for w := range fillers {
		wg.Go(func() {
			// Zipf rank r is cold[r]: the prefill holds ranks 0..prefill-1.
			for i := w; i < sc.prefill; i += fillers {
				if err := fillCold.Set(ctx, cold[i], value{Key: cold[i], Payload: payload}); err != nil {
					fillFailed(err)
				}
			}
		})
	}
	wg.Wait()
	fillHot, err := newFiller(admin, name+"-hot", append(setup, tiered.WithRemoteTTL(hotTTL), tiered.WithJitter(0))...)
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
				fillFailed(err)
			}
		})
	}
	wg.Wait()
	if n := fillErrs.Load(); n > 0 {
		b.Logf("warm-up: %d of %d writes failed (those keys start as misses); last: %v", n, sc.prefill+hotKeys, lastFillErr.Load())
	}

	// The open-loop generator: the dispatcher wakes every tick and starts,
	// each in its own goroutine, every request whose scheduled time has
	// come; latency counts from the scheduled time, so a slow dispatcher or
	// a saturated CPU shows up in it (no coordinated omission).
	total := int(int64(sc.rate) * int64(sc.runFor) / int64(time.Second))
	period := time.Second / time.Duration(sc.rate)
	lat := make([]time.Duration, total)
	isHot := make([]bool, total)
	var errs atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, zipfS, 1, uint64(sc.coldKeys-1))

	srv0, sent0 := servers(b, admin), sent()
	if bb, ok := b.(*testing.B); ok {
		bb.StartTimer()
	}
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
	if bb, ok := b.(*testing.B); ok {
		bb.StopTimer()
	}
	srv1, sent1 := servers(b, admin), sent()

	r := result{
		requests:   total,
		errors:     int(errs.Load()),
		fillErrors: fillErrs.Load(),
		hotLoads:   hotLoads.Load(),
		coldLoad:   coldLoads.Load(),
		redisOps:   srv1.commands - srv0.commands,
		redisCPU:   srv1.cpu - srv0.cpu,
		sent:       sent1.sub(sent0),
		elapsed:    elapsed,
		lat:        lat,
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

// BenchmarkHotKeys is the design's hot-key load test: 4 nodes, an
// open-loop load of 12k req/s for 5 s; 15 % of it on 5 hot keys that expire
// together (1 s TTL, no jitter), the rest Zipf (s = 1.1) over 1M cold keys of
// which the 20k most popular are in L2 before the run; an L1 of 10k entries
// per node and cache; a 30 ms loader. Each configuration runs once per b.N
// with a fresh cache name; use -benchtime 1x. Reported per configuration:
// p50/p99 latency (all requests and hot-key requests), hit ratio
// (1 - loader calls/requests), loader calls; on the Redis side, the
// commands the servers ran per second (delta of total_commands_processed
// over the run on the server or the Cluster's primaries, which counts every
// command a Lua script runs inside it: run it alone), the commands and round
// trips the nodes' clients sent per second (a go-redis hook; a pipeline is
// one round trip per node), and the servers' CPU (delta of used_cpu_sys +
// used_cpu_user, summed over the primaries, as milliseconds per second of
// run). At the end it prints the table of docs/performance.md beside the design's
// figures.
func BenchmarkHotKeys(b *testing.B) {
	var table []string
	for _, dep := range []string{"standalone", "cluster"} {
		for _, c := range configs {
			before := runtime.NumGoroutine()
			b.Run(dep+"/"+c.name, func(b *testing.B) {
				b.StopTimer()
				var all result
				for range b.N {
					r := run(b, dep, c, full)
					all.requests += r.requests
					all.errors += r.errors
					all.fillErrors += r.fillErrors
					all.hotLoads += r.hotLoads
					all.coldLoad += r.coldLoad
					all.redisOps += r.redisOps
					all.redisCPU += r.redisCPU
					all.sent = all.sent.add(r.sent)
					all.elapsed += r.elapsed
					all.lat = append(all.lat, r.lat...)
					all.hotLat = append(all.hotLat, r.hotLat...)
				}
				if all.errors > 0 {
					// Reported, not fatal: on a saturated machine some
					// requests may time out; the table shows how many.
					b.Logf("%d of %d requests failed", all.errors, all.requests)
				}
				loads := all.hotLoads + all.coldLoad
				hit := 1 - float64(loads)/float64(all.requests)
				secs := all.elapsed.Seconds()
				ops := float64(all.redisOps) / secs
				sentCmds := float64(all.sent.cmds) / secs
				sentTrips := float64(all.sent.trips) / secs
				cpuMs := 1000 * all.redisCPU / secs
				if all.sent.bus > 0 || all.sent.scriptRetries > 0 {
					b.Logf("apart from the counts: %d bus-only publishes, %d NOSCRIPT answers, %d topology commands",
						all.sent.bus, all.sent.scriptRetries, all.sent.topology)
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(quantile(all.lat, 0.50), "p50-ms")
				b.ReportMetric(quantile(all.lat, 0.99), "p99-ms")
				b.ReportMetric(quantile(all.lat, 0.999), "p99.9-ms")
				b.ReportMetric(quantile(all.hotLat, 0.99), "hot-p99-ms")
				b.ReportMetric(hit, "hit-ratio")
				b.ReportMetric(float64(loads)/float64(b.N), "loads")
				b.ReportMetric(float64(all.hotLoads)/float64(b.N), "hot-loads")
				b.ReportMetric(ops, "redis-ops/s")
				b.ReportMetric(sentCmds, "sent-cmds/s")
				b.ReportMetric(sentTrips, "round-trips/s")
				b.ReportMetric(cpuMs, "redis-cpu-ms/s")
				b.ReportMetric(float64(all.requests)/all.elapsed.Seconds(), "req/s")
				b.ReportMetric(float64(all.errors), "errors")
				table = append(table, fmt.Sprintf("| %s | %s | %.1f ms | %.1f ms | %.1f %% | %.1fk | %.1fk | %.1fk | %.0f ms/s | %d (%d) | %d |",
					dep, c.name, quantile(all.lat, 0.99), quantile(all.hotLat, 0.99), 100*hit, ops/1000,
					sentCmds/1000, sentTrips/1000, cpuMs, loads/int64(b.N), all.hotLoads/int64(b.N), all.errors))
			})
			// Every request, loader, refresh and client goroutine is gone
			// once the caches and clients are closed.
			deadline := time.Now().Add(10 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				b.Errorf("%s/%s: %d goroutines after the run, want at most %d", dep, c.name, n, before)
			}
		}
	}
	fmt.Println("| deployment | configuration | p99 | hot-key p99 | hit ratio | Redis ops/s (server-run) | commands sent/s | round trips/s | Redis CPU | loader calls (hot) | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, row := range table {
		fmt.Println(row)
	}
	fmt.Println("design (L2 only / L1+L2 without lock / L1+L2 with lock): p99 327 / 215 / 89 ms, hit ratio 72 / 89 / 96 %, Redis QPS 8.6k / 4.1k / 1.3k")
}

// TestHotKeysSmoke runs the load test at toy size on standalone Redis, once
// per configuration, so that the benchmark keeps working. It checks only
// what holds at any size: every request answered, the loader called, the
// nodes' round trips counted (at least a read and a fill per loader call),
// and leases calling it for the hot keys no more often than without them.
func TestHotKeysSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis")
	}
	hot := map[string]int64{}
	for _, c := range configs[:3] {
		r := run(t, "standalone", c, smoke)
		if r.errors > 0 {
			t.Errorf("%s: %d of %d requests failed", c.name, r.errors, r.requests)
		}
		if r.coldLoad == 0 {
			t.Errorf("%s: the long tail never reached the loader", c.name)
		}
		// Every loader call follows its own L2 read and is followed by
		// its fill, each a round trip of the node's client: the hook
		// that counts them is on every node's client.
		if loads := r.hotLoads + r.coldLoad; r.sent.trips < 2*loads {
			t.Errorf("%s: the nodes' clients sent %d round trips for %d loader calls, want at least %d",
				c.name, r.sent.trips, loads, 2*loads)
		}
		hot[c.name] = r.hotLoads
	}
	// The hot keys are in L2 before the run; leases never load them more
	// often than the configurations without them.
	if hot["tiercache"] > hot["l1+l2-no-lock"] && hot["l1+l2-no-lock"] > 0 {
		t.Errorf("hot-key loads: tiercache %d > without lock %d", hot["tiercache"], hot["l1+l2-no-lock"])
	}
}
