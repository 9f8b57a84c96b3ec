package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
)

func TestMaxConcurrentLoads(t *testing.T) {
	l1, err := local.New[int]()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[int]("capped", l1, nil, tiered.WithMaxConcurrentLoads(2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	load := func(ctx context.Context, key string) (int, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		return 1, nil
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if _, err := c.GetOrLoad(context.Background(), fmt.Sprint(i), load); err != nil {
				t.Error(err)
			}
		})
	}
	eventually(t, 5*time.Second, "two loads never ran at once", func() bool { return inFlight.Load() == 2 })
	// A caller that cannot get a slot before its deadline gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.GetOrLoad(ctx, "late", load); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("caller without a slot = %v, want DeadlineExceeded", err)
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrent loads = %d, want 2", p)
	}
	if _, err := tiered.New[int]("x", l1, nil, tiered.WithMaxConcurrentLoads(-1)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("negative cap: %v", err)
	}
}
