package invalidation_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/bushook"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// TestWritesReachEveryNode: after Delete or Set on A returns, B and C stop
// serving the old value from L1 within milliseconds.
func TestWritesReachEveryNode(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			nodes := newNodes(t, topo, 3, redistest.Name(t), nodeConfig{})
			a := nodes[0]
			db := map[string]string{"k": "v1"}
			var dbMu sync.Mutex
			load := func(_ context.Context, key string) (string, error) {
				dbMu.Lock()
				defer dbMu.Unlock()
				return db[key], nil
			}
			for _, n := range nodes {
				if v, err := n.cache.GetOrLoad(ctx, "k", load); err != nil || v != "v1" {
					t.Fatalf("%s: GetOrLoad = %q, %v; want v1", n.name, v, err)
				}
				if v, ok := n.cached("k"); !ok || v != "v1" {
					t.Fatalf("%s: L1 holds %q, %v after the read; want v1", n.name, v, ok)
				}
			}

			// Delete on A: B and C drop v1 from L1, and read through to the
			// new database value.
			dbMu.Lock()
			db["k"] = "v2"
			dbMu.Unlock()
			if err := a.cache.Delete(ctx, "k"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			for _, n := range nodes[1:] {
				d := eventually(t, 5*time.Second, n.name+" to drop v1", func() bool {
					_, ok := n.cached("k")
					return !ok
				})
				t.Logf("%s dropped the deleted key %v after Delete returned", n.name, d)
				if v, err := n.cache.GetOrLoad(ctx, "k", load); err != nil || v != "v2" {
					t.Errorf("%s: GetOrLoad after Delete = %q, %v; want v2", n.name, v, err)
				}
			}

			// Set on A: B and C stop serving v2 and read v3 from L2.
			if err := a.cache.Set(ctx, "k", "v3"); err != nil {
				t.Fatalf("Set: %v", err)
			}
			for _, n := range nodes[1:] {
				d := eventually(t, 5*time.Second, n.name+" to drop v2", func() bool {
					v, ok := n.cached("k")
					return !ok || v == "v3"
				})
				t.Logf("%s dropped the overwritten value %v after Set returned", n.name, d)
				if v, ok, err := n.cache.Get(ctx, "k"); err != nil || !ok || v != "v3" {
					t.Errorf("%s: Get after Set = %q, %v, %v; want v3", n.name, v, ok, err)
				}
			}
			if v, ok := a.cached("k"); !ok || v != "v3" {
				t.Errorf("A: L1 holds %q, %v after its own Set; want v3 (read-your-writes)", v, ok)
			}
		})
	}
}

// TestInvalidationBetweenL2ReadAndL1Fill forces the race the generation
// guard exists for: B reads v1 from L2, and before it fills L1, A's Set
// invalidates the key on B. The invalidation wins: v1 never lands in B's L1.
func TestInvalidationBetweenL2ReadAndL1Fill(t *testing.T) {
	ctx := ctxT(t)
	nodes := newNodes(t, topologies()[0], 2, redistest.Name(t), nodeConfig{})
	a, b := nodes[0], nodes[1]
	invalidated := b.l1.watchInvalidations()
	waitInvalidated := func() {
		t.Helper()
		for k := ""; k != "k"; {
			select {
			case k = <-invalidated:
			case <-ctx.Done():
				t.Fatal("the invalidation never reached B")
			}
		}
	}
	if err := a.cache.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	// Let the invalidation of this first Set reach B now, so that the one
	// awaited below is the second Set's.
	waitInvalidated()

	// B's read: L1 miss, generation snapshot, L2 GET (v1), then held in Fill.
	reached, release := b.l1.holdNextFill()
	type result struct {
		v   string
		ok  bool
		err error
	}
	got := make(chan result, 1)
	go func() {
		v, ok, err := b.cache.Get(ctx, "k")
		got <- result{v, ok, err}
	}()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("B's read never reached its L1 fill")
	}

	// A writes v2; the bus invalidates "k" on B while B's fill is held.
	if err := a.cache.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	waitInvalidated()
	close(release)
	r := <-got
	if r.err != nil || !r.ok || r.v != "v1" {
		t.Fatalf("B's read = %q, %v, %v; want v1 (it read L2 before the write)", r.v, r.ok, r.err)
	}
	if v, ok := b.cached("k"); ok {
		t.Fatalf("B's L1 holds %q: the stale fill landed after the invalidation", v)
	}
	if v, ok, err := b.cache.Get(ctx, "k"); err != nil || !ok || v != "v2" {
		t.Errorf("B's next read = %q, %v, %v; want v2", v, ok, err)
	}
}

// TestRandomizedStalenessBound runs several nodes doing random reads, sets
// and deletes over a few keys while the buses lose messages at random, and
// checks that no read returns a value replaced more than the staleness bound
// before the read began: min(LocalTTL, loss detection time), where loss
// detection takes at most (SilenceIntervals + 1) heartbeat intervals (a gap
// is seen at the next message or heartbeat of the origin; three lost in a
// row make the origin silent), plus slack for scheduling on a loaded
// machine.
func TestRandomizedStalenessBound(t *testing.T) {
	const (
		nodeCount  = 4
		keys       = 40
		readers    = 2 // per node
		duration   = 4 * time.Second
		heartbeat  = 50 * time.Millisecond
		silence    = 3
		localTTL   = 5 * time.Second
		lossRate   = 0.10
		slack      = 250 * time.Millisecond
		detection  = (silence + 1) * heartbeat
		staleBound = min(localTTL, detection) + slack
		// Each node writes a random key every 10 to 40 ms: a key is
		// rewritten about once a second, much less often than the bound, so
		// a lost invalidation that went unnoticed would leave a stale value
		// long enough for the checker to see it.
		writePause = 10 * time.Millisecond
		readPause  = 200 * time.Microsecond
	)
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			var rngMu sync.Mutex
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			lose := func(bool, bushook.Msg) bool {
				rngMu.Lock()
				defer rngMu.Unlock()
				return rng.Float64() < lossRate
			}
			nodes := newNodes(t, topo, nodeCount, redistest.Name(t), nodeConfig{
				busOpts: []invalidation.Option{
					invalidation.WithHeartbeatInterval(heartbeat),
					invalidation.WithSilenceIntervals(silence),
					bushook.Option(bushook.Hooks{Drop: lose}).(invalidation.Option),
				},
				cacheOpts: []tiered.Option{tiered.WithLocalTTL(localTTL)},
			})
			h := newHistory(keys)
			load := func(_ context.Context, key string) (string, error) { return h.current(key), nil }

			var wg sync.WaitGroup
			var ops atomic.Int64
			deadline := time.Now().Add(duration)
			for i, n := range nodes {
				for w := range readers {
					wg.Go(func() {
						r := rand.New(rand.NewPCG(uint64(i), uint64(w)))
						for time.Now().Before(deadline) && ctx.Err() == nil {
							key := "k" + strconv.Itoa(r.IntN(keys))
							start := time.Now()
							if r.IntN(4) == 0 {
								v, ok, err := n.cache.Get(ctx, key)
								if err != nil {
									t.Errorf("%s: Get(%s): %v", n.name, key, err)
									return
								}
								if ok {
									h.read(n.name, key, start, v)
								}
							} else {
								v, err := n.cache.GetOrLoad(ctx, key, load)
								if err != nil {
									t.Errorf("%s: GetOrLoad(%s): %v", n.name, key, err)
									return
								}
								h.read(n.name, key, start, v)
							}
							ops.Add(1)
							// Leave CPU to the buses: the bound is about them.
							time.Sleep(readPause)
						}
					})
				}
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(i), 99))
					for time.Now().Before(deadline) && ctx.Err() == nil {
						key := "k" + strconv.Itoa(r.IntN(keys))
						if r.IntN(2) == 0 {
							h.write(key, func(v string) error { return n.cache.Set(ctx, key, v) })
						} else {
							h.write(key, func(string) error { return n.cache.Delete(ctx, key) })
						}
						ops.Add(1)
						time.Sleep(writePause * time.Duration(1+r.IntN(4))) // pacing the workload
					}
				})
			}
			wg.Wait()

			var gaps, flushes, dropped uint64
			for _, n := range nodes {
				s := n.bus.Stats()
				gaps += s.Gaps
				flushes += s.Flushes.Gap + s.Flushes.Silence + s.Flushes.Resubscribe
				dropped += s.Dropped
			}
			worst, violations := h.check(staleBound)
			t.Logf("%d ops, %d reads, %d writes; %d messages dropped, %d gaps, %d flushes; worst staleness %v (bound %v)",
				ops.Load(), h.reads(), h.writes(), dropped, gaps, flushes, worst, staleBound)
			for _, v := range violations[:min(len(violations), 10)] {
				t.Error(v)
			}
			if dropped == 0 || gaps == 0 {
				t.Errorf("the test injected no loss (%d dropped, %d gaps): it proves nothing", dropped, gaps)
			}
		})
	}
}

// history is the test's database and its log: every write of a key makes a
// new version ("key@n"), written to the database before the cache is told,
// and serialised per key, so versions of a key are totally ordered.
type history struct {
	mu      sync.Mutex
	keyMu   []sync.Mutex           // serialises writes per key
	version map[string]int         // current database version
	done    map[string][]time.Time // done[key][n]: when the write of version n returned (0: the start)
	log     []readRecord
	nwrites int
}

type readRecord struct {
	node, key string
	start     time.Time
	version   int
}

func newHistory(keys int) *history {
	h := &history{keyMu: make([]sync.Mutex, keys), version: map[string]int{}, done: map[string][]time.Time{}}
	for i := range keys {
		h.done["k"+strconv.Itoa(i)] = []time.Time{time.Now()}
	}
	return h
}

func (h *history) current(key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return key + "@" + strconv.Itoa(h.version[key])
}

// write makes a new version of key in the database, then runs cacheOp
// (retrying until it succeeds, as an application would) and records when it
// returned.
func (h *history) write(key string, cacheOp func(v string) error) {
	i, _ := strconv.Atoi(strings.TrimPrefix(key, "k"))
	h.keyMu[i].Lock()
	defer h.keyMu[i].Unlock()
	h.mu.Lock()
	h.version[key]++
	v := key + "@" + strconv.Itoa(h.version[key])
	h.mu.Unlock()
	for attempt := 1; ; attempt++ {
		err := cacheOp(v)
		if err == nil {
			break
		}
		if attempt == 20 || !errors.Is(err, tiered.ErrInvalidation) && !errors.Is(err, tiered.ErrRemote) {
			panic(fmt.Sprintf("write %s, attempt %d: %v", v, attempt, err))
		}
	}
	h.mu.Lock()
	h.done[key] = append(h.done[key], time.Now())
	h.nwrites++
	h.mu.Unlock()
}

// writeRetrying is write for faults: it retries any error (Redis may be
// unreachable for a while) until ctx ends.
func (h *history) writeRetrying(ctx context.Context, key string, cacheOp func(v string) error) {
	i, _ := strconv.Atoi(strings.TrimPrefix(key, "k"))
	h.keyMu[i].Lock()
	defer h.keyMu[i].Unlock()
	h.mu.Lock()
	h.version[key]++
	v := key + "@" + strconv.Itoa(h.version[key])
	h.mu.Unlock()
	for cacheOp(v) != nil {
		if ctx.Err() != nil {
			return // never confirmed: its successor's time is unknown
		}
		time.Sleep(20 * time.Millisecond) // retry pacing
	}
	h.mu.Lock()
	h.done[key] = append(h.done[key], time.Now())
	h.nwrites++
	h.mu.Unlock()
}

func (h *history) read(node, key string, start time.Time, value string) {
	k, n, ok := strings.Cut(value, "@")
	version, err := strconv.Atoi(n)
	if !ok || k != key || err != nil {
		panic(fmt.Sprintf("%s read %q under %s", node, value, key))
	}
	h.mu.Lock()
	if version > h.version[key] {
		h.mu.Unlock()
		panic(fmt.Sprintf("%s read %q, a version never written (newest %d)", node, value, h.version[key]))
	}
	h.log = append(h.log, readRecord{node, key, start, version})
	h.mu.Unlock()
}

func (h *history) reads() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.log)
}

func (h *history) writes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nwrites
}

// check returns the worst staleness seen (how long before the read began the
// version it returned had been replaced) and a line for every read staler
// than bound.
func (h *history) check(bound time.Duration) (worst time.Duration, violations []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.log {
		done := h.done[r.key]
		if r.version+1 >= len(done) {
			continue // the newest version, or one whose successor never finished
		}
		replaced := done[r.version+1] // when the next write returned
		stale := r.start.Sub(replaced)
		worst = max(worst, stale)
		if stale > bound {
			violations = append(violations, fmt.Sprintf("%s read %s@%d %v after %s@%d was written (bound %v)",
				r.node, r.key, r.version, stale, r.key, r.version+1, bound))
		}
	}
	slices.Sort(violations)
	return worst, violations
}
