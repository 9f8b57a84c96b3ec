package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// failoverCall is one write of TestHealthyShardsThroughFailover, its start
// and end measured from the kill.
type failoverCall struct {
	start, end time.Duration
	err        error
}

// refusalWindow is when the healthy primaries themselves said
// cluster_state:fail, measured from the kill (zero: never seen).
type refusalWindow struct {
	mu       sync.Mutex
	from, to time.Duration
}

func (w *refusalWindow) saw(at time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.from == 0 || at < w.from {
		w.from = at
	}
	w.to = max(w.to, at)
}

// overlaps reports whether c ran while the healthy primaries refused every
// key, widened by margin on both sides for the poll's own latency.
func (w *refusalWindow) overlaps(c failoverCall, margin time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.from != 0 && c.end >= w.from-margin && c.start <= w.to+margin
}

// Issue 20 observation 1: a primary of 3 is SIGKILLed while two nodes
// (each with its own Cluster client, the default remote timeout) write
// keys spread over every slot; the writes go on through the outage, the
// replica's promotion and the slot-map reloads after it. The Cluster runs
// with Redis' default cluster-require-full-coverage yes, as test/redis.sh
// and docker-compose.yml do: from the moment the dead primary is marked
// failed until its replica is promoted (about a second) the healthy
// primaries answer CLUSTERDOWN to every key, which no client can help.
// Outside that window at least 99 % of the writes to keys on the healthy
// primaries must succeed, and no breaker but the dead primary's may open.
// (Before the fix, the CLUSTERDOWN replies, and the timeouts of go-redis
// retrying them, opened every healthy shard's breaker, which then refused
// its keys for a full cool-down after the Cluster was back.)
//
// Measure with (numbers in docs/degradation.md):
//
//	go test -race -count=1 -run TestHealthyShardsThroughFailover -v ./tiered/
func TestHealthyShardsThroughFailover(t *testing.T) {
	pc := redistest.NewCluster(t, 3, 3, "--cluster-require-full-coverage", "yes")
	name := redistest.Name(t)
	nodes := []*node[string]{
		newNode[string](t, name, pc.Client(t, nil), tiered.WithRemoteTimeout(tiered.DefaultRemoteTimeout)),
		newNode[string](t, name, pc.Client(t, nil), tiered.WithRemoteTimeout(tiered.DefaultRemoteTimeout)),
	}
	victim := pc.Primaries[0].Addr()
	var keys []string
	onDead := map[string]bool{}
	for i := range 600 {
		k := fmt.Sprint("k", i)
		keys = append(keys, k)
		if nodes[0].l2.Shard(name+":"+k) == victim {
			onDead[k] = true
		}
	}
	if len(onDead) == 0 || len(onDead) == len(keys) {
		t.Fatalf("%d of %d keys on the killed primary; want some", len(onDead), len(keys))
	}
	ctx := context.Background()
	for i, k := range keys {
		if err := nodes[i%2].Set(ctx, k, "before"); err != nil {
			t.Fatalf("Set %q before the kill: %v", k, err)
		}
	}

	pc.Primaries[0].Stop(t) // SIGKILL
	killed := time.Now()
	stop := make(chan struct{})
	var window refusalWindow
	var watchers sync.WaitGroup
	for _, p := range pc.Primaries[1:] {
		h := p.Client(t)
		watchers.Go(func() {
			poll := time.NewTicker(2 * time.Millisecond)
			defer poll.Stop()
			for {
				select {
				case <-stop:
					return
				case <-poll.C:
				}
				asked := time.Since(killed)
				if info, err := h.ClusterInfo(ctx).Result(); err == nil && strings.Contains(info, "cluster_state:fail") {
					window.saw(asked)
				}
			}
		})
	}
	// The writers go on until the killed primary's keys have been writable
	// for tail (past the slot-map reloads after the promotion and the 2 s
	// during which Shard rechecks the map), or for at most limit.
	const tail, limit = 2500 * time.Millisecond, 20 * time.Second
	var mu sync.Mutex
	var healthy, dead []failoverCall
	var recovered atomic.Int64 // first success on the killed primary's slots, after the kill
	var writers sync.WaitGroup
	for w := range 8 {
		n := nodes[w%len(nodes)]
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 20))
			pace := time.NewTicker(8 * time.Millisecond) // the writer's pace
			defer pace.Stop()
			for {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				k := keys[r.IntN(len(keys))]
				c := failoverCall{start: time.Since(killed)}
				c.err = n.Set(ctx, k, "during")
				c.end = time.Since(killed)
				mu.Lock()
				if onDead[k] {
					dead = append(dead, c)
					if c.err == nil {
						recovered.CompareAndSwap(0, int64(c.end))
					}
				} else {
					healthy = append(healthy, c)
				}
				mu.Unlock()
			}
		})
	}
	replica := pc.Replicas[0].Client(t)
	var promoted time.Duration
	for {
		since := time.Since(killed)
		if promoted == 0 {
			if info, err := replica.Info(ctx, "replication").Result(); err == nil && strings.Contains(info, "role:master") {
				promoted = since
			}
		}
		if rec := time.Duration(recovered.Load()); (rec != 0 && since > rec+tail) || since > limit {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	close(stop)
	writers.Wait()
	watchers.Wait()
	took := time.Since(killed)

	// Calls that ran while Redis itself refused every key are counted
	// apart; a margin of the remote timeout covers the poll's latency.
	margin := tiered.DefaultRemoteTimeout
	var all, allOK, outside, outsideOK, refused, inWindow int
	reasons := map[string]int{}
	for _, c := range healthy {
		all++
		if c.err == nil {
			allOK++
		}
		if window.overlaps(c, margin) {
			inWindow++
			continue
		}
		outside++
		if c.err == nil {
			outsideOK++
			continue
		}
		if errors.Is(c.err, tiered.ErrCircuitOpen) {
			refused++
		}
		msg := c.err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		reasons[msg]++
	}
	var deadOK, deadRefused int
	for _, c := range dead {
		switch {
		case c.err == nil:
			deadOK++
		case errors.Is(c.err, tiered.ErrCircuitOpen):
			deadRefused++
		}
	}
	rate := float64(outsideOK) / float64(max(outside, 1))
	t.Logf("healthy shards: %d/%d writes ok (%.2f %%) outside the %v-%v the healthy primaries said cluster_state:fail (±%v), %d refused by a breaker, failures %v; all calls: %d/%d ok (%.2f %%), %d during the refusal",
		outsideOK, outside, 100*rate, window.from.Round(time.Millisecond), window.to.Round(time.Millisecond), margin,
		refused, reasons, allOK, all, 100*float64(allOK)/float64(max(all, 1)), inWindow)
	rec := time.Duration(recovered.Load())
	t.Logf("killed shard: %d writes, %d ok, %d refused by its breaker; writable again %v after the kill (replica promoted after about %v); ran %v",
		len(dead), deadOK, deadRefused, rec.Round(time.Millisecond), promoted.Round(10*time.Millisecond), took.Round(time.Millisecond))
	healthyAddrs := []string{pc.Primaries[1].Addr(), pc.Primaries[2].Addr()}
	for i, n := range nodes {
		t.Logf("node %d: slot map reloads asked %d, breakers %+v", i, n.l2.Stats().SlotReloads, n.Stats().Shards)
		for _, sh := range n.Stats().Shards {
			if sh.Openings > 0 && (slices.Contains(healthyAddrs, sh.Shard) || sh.Shard == "") {
				t.Errorf("node %d: the breaker of healthy shard %q opened %d times", i, sh.Shard, sh.Openings)
			}
		}
	}
	if rec == 0 {
		t.Fatalf("writes to the killed primary's slots still failed %v after the kill", took)
	}
	if window.from == 0 {
		t.Errorf("the healthy primaries never said cluster_state:fail; want the refusal window of require-full-coverage")
	}
	if rate < 0.99 {
		t.Errorf("healthy-shard write success rate %.4f outside the refusal window, want >= 0.99", rate)
	}
}
