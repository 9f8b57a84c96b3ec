package history

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

var runFor = flag.Duration("history.duration", 1200*time.Millisecond,
	"how long TestReadPathHistory runs its workload, per topology")

// The workload. The bus options are the ones D is computed from.
const (
	nodeCount        = 3
	keyCount         = 8
	readersPerNode   = 2
	heartbeat        = 100 * time.Millisecond
	lagLimit         = heartbeat // the default, stated so D is computed from what the bus gets
	silenceIntervals = 3         // the default, likewise
	readPause        = 200 * time.Microsecond
	writePause       = time.Millisecond // times 1-4
	probeTick        = 10 * time.Millisecond
	// baseSlack covers the round trip the README adds to D ("plus a round
	// trip": the message's own trip and the Set's, on loopback well under a
	// millisecond, but tens of milliseconds under -race on a busy machine)
	// and the goroutine wake-ups between a message's arrival and the L1
	// eviction.
	baseSlack = 50 * time.Millisecond
)

// detectionTime is the README's D for the options above:
// max(HeartbeatInterval + 2 × LagLimit, SilenceIntervals × HeartbeatInterval)
// + HeartbeatInterval/4.
func detectionTime() time.Duration {
	return max(heartbeat+2*lagLimit, silenceIntervals*heartbeat) + heartbeat/4
}

type topology struct {
	name   string
	client func(testing.TB) redis.UniversalClient
}

var topologies = []topology{
	{"standalone", func(t testing.TB) redis.UniversalClient { return redistest.Standalone(t) }},
	{"cluster", func(t testing.TB) redis.UniversalClient { return redistest.Cluster(t) }},
}

// timedL1 is the ristretto L1, recording its longest Flush: entries stay
// readable until ristretto's Clear returns, which can take a second on a
// loaded machine under -race.
type timedL1 struct {
	*local.Store[string]
	longestFlush *atomic.Int64
}

func (l timedL1) Flush() {
	start := time.Now()
	l.Store.Flush()
	d := int64(time.Since(start))
	for {
		cur := l.longestFlush.Load()
		if d <= cur || l.longestFlush.CompareAndSwap(cur, d) {
			return
		}
	}
}

type node struct {
	name  string
	bus   *invalidation.Bus
	cache *tiered.Cache[string]
}

// newNodes starts the nodes of cache name, each with its own client, the
// bus on that client (so writes are carried), remote store and L1.
func newNodes(t *testing.T, topo topology, name string, longestFlush *atomic.Int64) []*node {
	t.Helper()
	nodes := make([]*node, nodeCount)
	for i := range nodes {
		rdb := topo.client(t)
		bus, err := invalidation.New(rdb,
			invalidation.WithChannelPrefix(name+":bus"),
			invalidation.WithHeartbeatInterval(heartbeat),
			invalidation.WithLagLimit(lagLimit),
			invalidation.WithSilenceIntervals(silenceIntervals))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bus.Close() })
		if got, want := bus.DetectionTime(), detectionTime(); got != want {
			t.Fatalf("bus.DetectionTime() = %v; the README's formula gives %v", got, want)
		}
		st, err := remote.New(rdb)
		if err != nil {
			t.Fatal(err)
		}
		store, err := local.New[string]()
		if err != nil {
			t.Fatal(err)
		}
		c, err := tiered.New[string](name, timedL1{store, longestFlush}, st,
			tiered.WithInvalidation(bus), tiered.WithRemoteTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		nodes[i] = &node{name: string(rune('A' + i)), bus: bus, cache: c}
	}
	return nodes
}

// database is the source of truth: the loader reads it, writers write it
// before they tell the cache, one writer per key at a time (rowLock).
type database struct {
	rowLock [keyCount]sync.Mutex
	mu      sync.Mutex
	version [keyCount]int
	value   [keyCount]string // "" for an absent row
}

func (db *database) load(_ context.Context, key string) (string, error) {
	i := keyIndex(key)
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.value[i] == "" {
		return "", tiered.ErrNotFound
	}
	return db.value[i], nil
}

// write makes the next version of row i (absent for a delete) and returns
// the value written.
func (db *database) write(i int, del bool) string {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.version[i]++
	v := ""
	if !del {
		v = "k" + strconv.Itoa(i) + "@v" + strconv.Itoa(db.version[i])
	}
	db.value[i] = v
	return v
}

func keyIndex(key string) int {
	i, err := strconv.Atoi(key[1:])
	if err != nil {
		panic("history: bad key " + key)
	}
	return i
}

// TestReadPathHistory runs concurrent GetOrLoad, Set and Delete on three
// nodes over a small key space against real Redis, records every operation
// and checks the history with Check against D plus a slack.
//
// The slack: D assumes the bus's goroutines (subscriber, watchdog) run when
// their timers fire. On a 2-core machine shared with other test processes,
// under -race, a goroutine can be kept off the CPU for hundreds of
// milliseconds (docs/consistency.md measured 1 ms to 1.7 s for a 10 ms ticker). The
// test runs such a ticker itself and grants its worst delay, since the same
// delay may have hit the node that served the stale read; plus the longest
// L1 Flush (entries stay readable until it returns), plus baseSlack. On a
// quiet machine the slack is about 60 ms against a D of 325 ms.
func TestReadPathHistory(t *testing.T) {
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) { runHistory(t, topo) })
	}
}

func runHistory(t *testing.T, topo topology) {
	ctx := context.Background()
	var longestFlush atomic.Int64
	nodes := newNodes(t, topo, redistest.Name(t), &longestFlush)
	db := &database{}

	base := time.Now()
	since := func() time.Duration { return time.Since(base) }
	deadline := base.Add(*runFor)

	var probeWorst time.Duration
	probeDone := make(chan struct{})
	stopProbe := make(chan struct{})
	go func() { // the scheduler-delay probe, stopped below
		defer close(probeDone)
		tk := time.NewTicker(probeTick)
		defer tk.Stop()
		prev := time.Now()
		for {
			select {
			case <-stopProbe:
				return
			case now := <-tk.C:
				probeWorst = max(probeWorst, time.Since(prev)-probeTick)
				prev = now
			}
		}
	}()

	var wg sync.WaitGroup
	logs := make([][]Op, nodeCount*(readersPerNode+1))
	for i, n := range nodes {
		for w := range readersPerNode {
			log := &logs[i*(readersPerNode+1)+w]
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), uint64(w)))
				for time.Now().Before(deadline) {
					key := "k" + strconv.Itoa(r.IntN(keyCount))
					op := Op{Node: n.name, Key: key, Kind: Read, Inv: since()}
					v, err := n.cache.GetOrLoad(ctx, key, db.load)
					op.Resp = since()
					switch {
					case errors.Is(err, tiered.ErrNotFound):
						op.Absent = true
					case err != nil:
						t.Errorf("%s: GetOrLoad(%s): %v", n.name, key, err)
						return
					default:
						op.Value = v
					}
					*log = append(*log, op)
					time.Sleep(readPause) // pacing: leave CPU to the buses
				}
			})
		}
		log := &logs[i*(readersPerNode+1)+readersPerNode]
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 99))
			for time.Now().Before(deadline) {
				k := r.IntN(keyCount)
				key := "k" + strconv.Itoa(k)
				del := r.IntN(3) == 0
				db.rowLock[k].Lock()
				op := Op{Node: n.name, Key: key, Kind: Set, Inv: since()}
				var err error
				if op.Value = db.write(k, del); del {
					op.Kind = Delete
					err = n.cache.Delete(ctx, key)
				} else {
					err = n.cache.Set(ctx, key, op.Value)
				}
				op.Resp = since()
				db.rowLock[k].Unlock()
				if err != nil {
					op.Failed = true
					t.Errorf("%s: %s(%s): %v", n.name, op.Kind, key, err)
				}
				*log = append(*log, op)
				time.Sleep(writePause * time.Duration(1+r.IntN(4))) // pacing
			}
		})
	}
	wg.Wait()
	close(stopProbe)
	<-probeDone

	var ops []Op
	for _, l := range logs {
		ops = append(ops, l...)
	}
	d := detectionTime()
	slack := baseSlack + probeWorst + time.Duration(longestFlush.Load())
	res := Check(ops, d+slack)

	var flushes, unhealthy uint64
	for _, n := range nodes {
		s := n.bus.Stats()
		flushes += s.Flushes.Gap + s.Flushes.Silence + s.Flushes.Resubscribe + s.Flushes.Unhealthy
		unhealthy += s.Unhealthy
	}
	crossNode := crossNodeReads(ops)
	t.Logf("%d operations checked (%d reads, %d writes, %d reads of another node's write); max staleness %v (read %v); D %v, slack %v (scheduler probe %v, longest L1 flush %v); %d bus flushes, %d times unhealthy",
		len(ops), res.Reads, res.Writes, crossNode, res.MaxStaleness, res.Worst, d, slack,
		probeWorst, time.Duration(longestFlush.Load()), flushes, unhealthy)
	var failed int
	for _, v := range res.Violations {
		if failed++; failed <= 10 {
			t.Error(v)
		}
	}
	if failed > 10 {
		t.Errorf("... and %d more violations", failed-10)
	}
	// The history must exercise the bound: writes on every node, and reads
	// that saw values written on other nodes.
	if res.Writes < 30 || res.Reads < 300 || crossNode < 30 {
		t.Errorf("the workload was too small to prove anything: %d writes, %d reads, %d cross-node reads",
			res.Writes, res.Reads, crossNode)
	}
}

// crossNodeReads counts the reads that returned a value a Set on another
// node wrote.
func crossNodeReads(ops []Op) int {
	writer := map[string]string{}
	for _, o := range ops {
		if o.Kind == Set {
			writer[o.Value] = o.Node
		}
	}
	n := 0
	for _, o := range ops {
		if o.Kind == Read && !o.Absent && writer[o.Value] != "" && writer[o.Value] != o.Node {
			n++
		}
	}
	return n
}
