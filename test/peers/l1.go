package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/dgraph-io/ristretto/v2"
	gocache "github.com/go-redis/cache/v9"
	motter "github.com/maypok86/otter/v2"
	"github.com/redis/rueidis"
	"github.com/tiercache/tiercache/local"
	lotter "github.com/tiercache/tiercache/local/otter"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/viccon/sturdyc"
	"github.com/vmihailenco/msgpack/v5"
)

// l1Hit: parallel hits of one hot key, GOMAXPROCS goroutines.
func l1Hit(ctx context.Context, e *env, cfg config) ([]*row, error) {
	r := newRow("L1 hit", fmt.Sprintf("parallel Get of a hot key, %d goroutines", runtime.GOMAXPROCS(0)), "ns/op",
		"ristretto v2, pointer value", "≤ 1.3x raw ristretto; 0 allocs; faster than every two-tier peer")
	v := mkVal(1)

	rc, err := ristretto.NewCache(&ristretto.Config[string, *val]{NumCounters: 1e6, MaxCost: 1e5, BufferItems: 64, IgnoreInternalCost: true})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	rc.SetWithTTL("hot", &v, 1, time.Hour)
	rc.Wait()

	oc := motter.Must(&motter.Options[string, *val]{MaximumSize: 100_000, ExpiryCalculator: motter.ExpiryWriting[string, *val](time.Hour)})
	defer oc.StopAllGoroutines()
	oc.Set("hot", &v)

	name := e.run + "-l1"
	tc, err := e.newNode("cluster", name, nodeOpts{opts: []tiered.Option{tiered.WithLocalTTL(time.Hour)}})
	if err != nil {
		return nil, err
	}
	defer tc.close()
	if err := tc.c.Set(ctx, "hot", v); err != nil {
		return nil, err
	}
	ol1, err := lotter.New[val]()
	if err != nil {
		return nil, err
	}
	rdb := e.clusterClient()
	defer rdb.Close()
	st, _ := remote.New(rdb)
	tco, err := tiered.New[val](name, ol1, st, tiered.WithLocalTTL(time.Hour))
	if err != nil {
		return nil, err
	}
	defer tco.Close()
	if _, err := tco.GetOrLoad(ctx, "hot", func(context.Context, string) (val, error) { return v, nil }); err != nil {
		return nil, err
	}

	sc := sturdyc.New[val](100_000, 10, time.Hour, 10)
	sc.Set("hot", v)

	gc := gocache.New(&gocache.Options{Redis: rdb, LocalCache: gocache.NewTinyLFU(100_000, time.Hour)})
	if err := gc.Set(&gocache.Item{Ctx: ctx, Key: name + ":gc:hot", Value: v, TTL: time.Hour}); err != nil {
		return nil, err
	}

	rue, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: e.cluster})
	if err != nil {
		return nil, err
	}
	defer rue.Close()
	rueKey := name + ":rue:hot"
	b, _ := msgpack.Marshal(v)
	if err := rue.Do(ctx, rue.B().Set().Key(rueKey).Value(rueidis.BinaryString(b)).Build()).Error(); err != nil {
		return nil, err
	}
	rueCmd := rue.B().Get().Key(rueKey).Cache().Pin()
	if _, err := rue.DoCache(ctx, rueCmd, time.Hour).AsBytes(); err != nil {
		return nil, err
	}

	fail := func(what string) { panic("peers: L1 hit: " + what + " missed") }
	cands := []candidate{
		{"ristretto v2, pointer value", func() (float64, error) {
			return parallel(cfg.l1Block, func() {
				if _, ok := rc.Get("hot"); !ok {
					fail("ristretto")
				}
			}), nil
		}},
		{"otter v2", func() (float64, error) {
			return parallel(cfg.l1Block, func() {
				if _, ok := oc.GetIfPresent("hot"); !ok {
					fail("otter")
				}
			}), nil
		}},
		{"tiercache Get", func() (float64, error) {
			return parallel(cfg.l1Block, func() {
				if _, ok, _ := tc.c.Get(ctx, "hot"); !ok {
					fail("tiercache")
				}
			}), nil
		}},
		{"tiercache Get, otter L1", func() (float64, error) {
			return parallel(cfg.l1Block, func() {
				if _, ok, _ := tco.Get(ctx, "hot"); !ok {
					fail("tiercache otter")
				}
			}), nil
		}},
		{"sturdyc", func() (float64, error) {
			return parallel(cfg.l1Block, func() {
				if _, ok := sc.Get("hot"); !ok {
					fail("sturdyc")
				}
			}), nil
		}},
		{"rueidis client-side cache (bytes)", func() (float64, error) {
			return parallel(cfg.l1Block, func() {
				if _, err := rue.DoCache(ctx, rueCmd, time.Hour).AsBytes(); err != nil {
					fail("rueidis")
				}
			}), nil
		}},
		{"go-redis/cache (TinyLFU, msgpack)", func() (float64, error) {
			return parallel(cfg.l1Block, func() {
				var out val
				if err := gc.Get(ctx, name+":gc:hot", &out); err != nil {
					fail("go-redis/cache")
				}
			}), nil
		}},
	}
	if err := interleave(r, cfg.rounds, cands); err != nil {
		return nil, err
	}
	allocs := testingAllocs(func() { tc.c.Get(ctx, "hot") })
	r.note("tiercache Get", fmt.Sprintf("%.0f allocs/op", allocs))
	r.note("tiercache Get, otter L1", fmt.Sprintf("%.0f allocs/op", testingAllocs(func() { tco.Get(ctx, "hot") })))
	return []*row{r}, nil
}

// testingAllocs returns the mean heap allocations of f over 1000 runs.
func testingAllocs(f func()) float64 {
	f()
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	for range 1000 {
		f()
	}
	runtime.ReadMemStats(&b)
	return float64(b.Mallocs-a.Mallocs) / 1000
}

// hitRatio: one goroutine reads keys drawn from a Zipf distribution (s =
// 1.01) over cfg.keys keys through stores of 10,000 entries, loading
// (instantly) on a miss. Each round uses its own seed; every candidate sees
// the same sequence.
func hitRatio(cfg config) ([]*row, error) {
	const capacity = 10_000
	r := newRow("Hit ratio", fmt.Sprintf("Zipf 1.01 over %d keys, %d-entry L1", cfg.keys, capacity), "%", "", "")
	keys := make([]string, cfg.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%012d", i)
	}
	warm := cfg.hitReqs / 5
	ctx := context.Background()
	type store struct {
		get  func(k string) bool
		set  func(k string)
		done func()
	}
	v := mkVal(1)
	vb, _ := msgpack.Marshal(v)
	mk := map[string]func() (store, error){
		"tiercache (ristretto L1)": func() (store, error) {
			l1, err := local.New[val](local.WithMaxEntries(capacity))
			if err != nil {
				return store{}, err
			}
			return tieredStore(l1)
		},
		"tiercache (otter L1)": func() (store, error) {
			l1, err := lotter.New[val](lotter.WithMaxEntries(capacity))
			if err != nil {
				return store{}, err
			}
			return tieredStore(l1)
		},
		"ristretto v2": func() (store, error) {
			c, err := ristretto.NewCache(&ristretto.Config[string, *val]{NumCounters: 10 * capacity, MaxCost: capacity, BufferItems: 64, IgnoreInternalCost: true})
			if err != nil {
				return store{}, err
			}
			return store{
				get:  func(k string) bool { _, ok := c.Get(k); return ok },
				set:  func(k string) { c.Set(k, &v, 1) },
				done: c.Close,
			}, nil
		},
		"otter v2": func() (store, error) {
			c := motter.Must(&motter.Options[string, *val]{MaximumSize: capacity})
			return store{
				get:  func(k string) bool { _, ok := c.GetIfPresent(k); return ok },
				set:  func(k string) { c.Set(k, &v) },
				done: func() { c.StopAllGoroutines() },
			}, nil
		},
		"go-redis/cache TinyLFU": func() (store, error) {
			c := gocache.NewTinyLFU(capacity, time.Hour)
			return store{
				get:  func(k string) bool { _, ok := c.Get(k); return ok },
				set:  func(k string) { c.Set(k, vb) },
				done: func() {},
			}, nil
		},
		"sturdyc": func() (store, error) {
			c := sturdyc.New[val](capacity, 10, time.Hour, 10)
			return store{
				get:  func(k string) bool { _, ok := c.Get(k); return ok },
				set:  func(k string) { c.Set(k, v) },
				done: func() {},
			}, nil
		},
	}
	_ = ctx
	order := []string{"tiercache (ristretto L1)", "tiercache (otter L1)", "ristretto v2", "otter v2", "go-redis/cache TinyLFU", "sturdyc"}
	var cands []candidate
	round := 0
	for _, name := range order {
		cands = append(cands, candidate{name, func() (float64, error) {
			s, err := mk[name]()
			if err != nil {
				return 0, err
			}
			defer s.done()
			rng := rand.New(rand.NewPCG(uint64(round/len(order)), 42))
			round++
			z := rand.NewZipf(rng, 1.01, 1, uint64(cfg.keys-1))
			hits := 0
			for i := range warm + cfg.hitReqs {
				k := keys[z.Uint64()]
				if s.get(k) {
					if i >= warm {
						hits++
					}
					continue
				}
				s.set(k)
			}
			return 100 * float64(hits) / float64(cfg.hitReqs), nil
		}})
	}
	rounds := min(cfg.rounds, 3)
	if err := interleave(r, rounds, cands); err != nil {
		return nil, err
	}
	return []*row{r}, nil
}

// tieredStore wraps an L1-only tiercache around l1: a miss is a GetOrLoad
// that calls the loader.
func tieredStore(l1 driver.Local[val]) (st struct {
	get  func(k string) bool
	set  func(k string)
	done func()
}, err error) {
	c, err := tiered.New[val]("hits", l1, nil, tiered.WithLocalTTL(time.Hour))
	if err != nil {
		return st, err
	}
	ctx := context.Background()
	loaded := false
	load := func(context.Context, string) (val, error) { loaded = true; return mkVal(1), nil }
	st.get = func(k string) bool {
		loaded = false
		if _, err := c.GetOrLoad(ctx, k, load); err != nil {
			panic(err)
		}
		return !loaded
	}
	st.set = func(string) {}
	st.done = func() { c.Close() }
	return st, nil
}

// heap: bytes of heap per entry of 100,000 entries (16-byte key, 64-byte
// struct value), store included, measured after a GC.
func heap() ([]*row, error) {
	const n = 100_000
	r := newRow("Heap", fmt.Sprintf("heap bytes per L1 entry (%d entries, 16-byte key, 64-byte struct)", n), "B", "", "")
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k-" + strconv.FormatInt(int64(1e13+i), 10)[:14]
	}
	v := mkVal(1)
	vb, _ := msgpack.Marshal(v)
	var sink any
	var stored func() int // counts the entries held, when the candidate sets it
	count := func(get func(k string) bool) func() int {
		return func() int {
			c := 0
			for _, k := range keys {
				if get(k) {
					c++
				}
			}
			return c
		}
	}
	measure := func(build func() (any, error)) (float64, error) {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&a)
		s, err := build()
		if err != nil {
			return 0, err
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&b)
		sink = s
		if stored != nil {
			if got := stored(); got < n*99/100 {
				return 0, fmt.Errorf("only %d of %d entries were stored", got, n)
			}
		}
		stored = nil
		return float64(int64(b.HeapAlloc)-int64(a.HeapAlloc)) / n, nil
	}
	cands := []candidate{
		{"tiercache L1 (local, ristretto)", func() (float64, error) {
			var st *local.Store[val]
			defer func() { st.Close() }()
			return measure(func() (any, error) {
				var err error
				if st, err = local.New[val](local.WithMaxEntries(2 * n)); err != nil {
					return nil, err
				}
				for _, k := range keys {
					st.Fill(k, v, false, time.Hour, st.Generation(k))
				}
				stored = count(func(k string) bool { _, _, ok := st.Get(k); return ok })
				return st, nil
			})
		}},
		{"tiercache L1 (local/otter)", func() (float64, error) {
			var st *lotter.Store[val]
			defer func() { st.Close() }()
			return measure(func() (any, error) {
				var err error
				if st, err = lotter.New[val](lotter.WithMaxEntries(2 * n)); err != nil {
					return nil, err
				}
				for _, k := range keys {
					st.Fill(k, v, false, time.Hour, st.Generation(k))
				}
				return st, nil
			})
		}},
		{"ristretto v2, pointer value", func() (float64, error) {
			var c *ristretto.Cache[string, *val]
			defer func() { c.Close() }()
			return measure(func() (any, error) {
				var err error
				if c, err = ristretto.NewCache(&ristretto.Config[string, *val]{NumCounters: 20 * n, MaxCost: 2 * n, BufferItems: 64, IgnoreInternalCost: true}); err != nil {
					return nil, err
				}
				for _, k := range keys {
					v := v
					c.SetWithTTL(k, &v, 1, time.Hour)
					c.Wait()
				}
				stored = count(func(k string) bool { _, ok := c.Get(k); return ok })
				return c, nil
			})
		}},
		{"otter v2", func() (float64, error) {
			var c *motter.Cache[string, *val]
			defer func() { c.StopAllGoroutines() }()
			return measure(func() (any, error) {
				c = motter.Must(&motter.Options[string, *val]{MaximumSize: 2 * n, ExpiryCalculator: motter.ExpiryWriting[string, *val](time.Hour)})
				for _, k := range keys {
					v := v
					c.Set(k, &v)
				}
				return c, nil
			})
		}},
		{"sturdyc", func() (float64, error) {
			return measure(func() (any, error) {
				c := sturdyc.New[val](2*n, 10, time.Hour, 10)
				for _, k := range keys {
					c.Set(k, v)
				}
				return c, nil
			})
		}},
		{"go-redis/cache TinyLFU (msgpack bytes)", func() (float64, error) {
			return measure(func() (any, error) {
				c := gocache.NewTinyLFU(2*n, time.Hour)
				for _, k := range keys {
					c.Set(k, append([]byte(nil), vb...))
				}
				return c, nil
			})
		}},
	}
	if err := interleave(r, 3, cands); err != nil {
		return nil, err
	}
	_ = sink
	return []*row{r}, nil
}
