package tiered_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// shardRun is what one phase of TestShardOutage saw on the healthy shards.
type shardRun struct {
	ops, ok     atomic.Int64 // reads and writes of keys on healthy shards
	loads       atomic.Int64 // loader calls for keys on healthy shards
	deadLoads   atomic.Int64 // loader calls for keys on the stopped shard
	writeErrors atomic.Int64
}

// Issue 9 observation 3: with one primary of a Cluster stopped, reads and
// writes of keys on the other primaries keep succeeding and the loader is
// called about as often as in a healthy run.
//
// Measure with (numbers in docs/degradation.md):
//
//	go test -race -count=1 -run TestShardOutage -v ./tiered/
func TestShardOutage(t *testing.T) {
	pc := redistest.NewCluster(t, 3, 0)
	rdb := pc.Client(t, nil)
	name := redistest.Name(t)
	opts := []tiered.Option{tiered.WithLocalTTL(20 * time.Millisecond), tiered.WithRemoteTimeout(500 * time.Millisecond)}
	nodes := []*node[user]{newNode[user](t, name, rdb, opts...), newNode[user](t, name, rdb, opts...)}
	dead := pc.Primaries[0].Addr()
	var keys, healthy []string
	onDead := map[string]bool{}
	for i := range 120 {
		k := fmt.Sprint("k", i)
		keys = append(keys, k)
		if nodes[0].l2.Shard(name+":"+k) == dead {
			onDead[k] = true
		} else {
			healthy = append(healthy, k)
		}
	}
	if len(onDead) == 0 || len(healthy) == 0 {
		t.Fatalf("%d keys on the dead shard, %d on others; want both", len(onDead), len(healthy))
	}
	const opsPerWorker = 300
	run := func(r *shardRun) {
		var wg sync.WaitGroup
		for w := range 8 {
			n := nodes[w%len(nodes)]
			wg.Go(func() {
				ctx := context.Background()
				load := func(_ context.Context, key string) (user, error) {
					if onDead[key] {
						r.deadLoads.Add(1)
					} else {
						r.loads.Add(1)
					}
					return user{ID: key}, nil
				}
				for i := range opsPerWorker {
					k := keys[(i*7+w*13)%len(keys)]
					var err error
					if i%4 == 0 {
						err = n.Set(ctx, k, user{ID: k})
						if err != nil && !onDead[k] {
							r.writeErrors.Add(1)
						}
					} else {
						var u user
						u, err = n.GetOrLoad(ctx, k, load)
						if err == nil && u.ID != k {
							err = fmt.Errorf("wrong value %+v", u)
						}
					}
					if !onDead[k] {
						r.ops.Add(1)
						if err == nil {
							r.ok.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
	}
	var before, during shardRun
	run(&before)
	pc.Primaries[0].Stop(t)
	start := time.Now()
	run(&during)
	took := time.Since(start)
	rate := float64(during.ok.Load()) / float64(during.ops.Load())
	t.Logf("healthy run: %d/%d healthy-shard ops ok, %d loader calls on healthy shards", before.ok.Load(), before.ops.Load(), before.loads.Load())
	t.Logf("one primary stopped: %d/%d healthy-shard ops ok (%.1f %%, %d write errors), %d loader calls on healthy shards, %d on the stopped one, in %v; breakers %+v",
		during.ok.Load(), during.ops.Load(), 100*rate, during.writeErrors.Load(), during.loads.Load(), during.deadLoads.Load(), took.Round(time.Millisecond), nodes[0].Stats().Shards)
	if rate < 0.99 {
		t.Errorf("healthy-shard success rate %.3f with one primary stopped, want >= 0.99", rate)
	}
	if l, b := during.loads.Load(), before.loads.Load(); l > 2*b+10 {
		t.Errorf("loader calls on healthy shards: %d with one primary stopped, %d healthy; want close", l, b)
	}
	var open []string
	for _, sh := range nodes[0].Stats().Shards {
		if sh.Openings > 0 {
			open = append(open, sh.Shard)
		}
	}
	if len(open) != 1 || open[0] != dead {
		t.Errorf("breakers opened for %v, want only the stopped primary %s", open, dead)
	}
}
