package tiered_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// Issue 9 observation 8: after SIGKILL of a primary, writes to its slots
// succeed again within the cluster's node timeout plus 3 s: the L2 store
// asks go-redis to reload the slot map on connection errors instead of
// waiting for its periodic refresh.
//
// Measure with (numbers in docs/degradation.md):
//
//	go test -race -count=1 -run TestWritesRecoverAfterFailover -v ./tiered/
func TestWritesRecoverAfterFailover(t *testing.T) {
	pc := redistest.NewCluster(t, 3, 1)
	rdb := pc.Client(t, nil)
	name := redistest.Name(t)
	n := newNode[string](t, name, rdb, tiered.WithRemoteTimeout(500*time.Millisecond))
	ctx := context.Background()
	victim := pc.Primaries[0].Addr()
	var keys []string
	for i := 0; len(keys) < 5; i++ {
		k := fmt.Sprint("k", i)
		if n.l2.Shard(name+":"+k) == victim {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if err := n.Set(ctx, k, "before"); err != nil {
			t.Fatalf("Set before the kill: %v", err)
		}
	}
	pc.Primaries[0].Stop(t) // SIGKILL
	killed := time.Now()
	limit := redistest.ClusterNodeTimeout + 3*time.Second
	replica := pc.Replicas[0].Client(t)
	var promoted time.Duration
	var last error
	for i := 0; ; i++ {
		if promoted == 0 {
			if info, err := replica.Info(ctx, "replication").Result(); err == nil && strings.Contains(info, "role:master") {
				promoted = time.Since(killed)
			}
		}
		k := keys[i%len(keys)]
		if last = n.Set(ctx, k, "after"); last == nil {
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("writes to the killed primary's slots still fail 30 s after the kill: %v", last)
		}
		time.Sleep(20 * time.Millisecond) // the writer's pace
	}
	took := time.Since(killed)
	// Every key of the range is writable, and readable, on the promoted
	// replica.
	for _, k := range keys {
		if err := n.Set(ctx, k, "after"); err != nil {
			t.Fatalf("Set %q after recovery: %v", k, err)
		}
	}
	t.Logf("writes to the killed primary's slots recovered %v after SIGKILL (replica promoted after about %v; cluster-node-timeout %v); slot map reloads asked: %d",
		took.Round(10*time.Millisecond), promoted.Round(10*time.Millisecond), redistest.ClusterNodeTimeout, n.l2.Stats().SlotReloads)
	// The promotion itself is the cluster's work and slows down on a
	// loaded machine; what the store adds after it must stay small.
	if took > limit && (promoted == 0 || took-promoted > 1500*time.Millisecond) {
		t.Fatalf("writes recovered %v after the kill (promotion after %v), want within %v, or within 1.5 s of the promotion", took, promoted, limit)
	}
}
