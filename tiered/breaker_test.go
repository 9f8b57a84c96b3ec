package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

func TestCircuitBreaker(t *testing.T) {
	srv := redistest.NewServer(t)
	const coolDown = 300 * time.Millisecond
	n := newNode[user](t, redistest.Name(t), srv.Client(t),
		tiered.WithRemoteTimeout(200*time.Millisecond), tiered.WithCircuitBreaker(3, coolDown))
	ctx := context.Background()
	var loader countingLoader
	read := func(i int) {
		t.Helper()
		key := fmt.Sprint("k", i)
		if u, err := n.GetOrLoad(ctx, key, loader.load); err != nil || u.ID != key {
			t.Fatalf("read %d = %+v, %v; want the loader's value", i, u, err)
		}
	}
	read(0)
	srv.Stop(t)
	for i := 1; i <= 10; i++ {
		read(i)
	}
	st := n.Stats()
	if !st.BreakerOpen || st.BreakerOpenings != 1 {
		t.Fatalf("breaker open %v, openings %d; want open once after 3 failures", st.BreakerOpen, st.BreakerOpenings)
	}
	if st.BreakerRejected < 7 {
		t.Fatalf("rejected L2 calls = %d, want >= 7 (reads after the third went straight to the loader)", st.BreakerRejected)
	}
	// Three failures reported, then the opening once; refused calls are not.
	errs := n.errors.all()
	openings := 0
	for _, err := range errs {
		if errors.Is(err, tiered.ErrCircuitOpen) {
			openings++
		}
	}
	if len(errs) != 4 || openings != 1 {
		t.Fatalf("handled errors = %d (%v); want 3 failures and one opening", len(errs), errs)
	}
	// Writes fail fast with the breaker's error.
	if err := n.Set(ctx, "w", user{}); !errors.Is(err, tiered.ErrCircuitOpen) || !errors.Is(err, tiered.ErrRemote) {
		t.Fatalf("Set while open = %v, want ErrCircuitOpen", err)
	}
	// A probe after the cool-down that fails keeps it open, without a new report.
	eventually(t, 5*time.Second, "no probe after the cool-down", func() bool {
		read(100)
		return n.Stats().L2Errors > st.L2Errors+1 // the Set above, then a probe
	})
	if st := n.Stats(); !st.BreakerOpen || st.BreakerOpenings != 1 {
		t.Fatalf("after a failed probe: open %v, openings %d; want still open, one opening", st.BreakerOpen, st.BreakerOpenings)
	}
	// Redis back: the next probe closes the breaker and L2 is used again.
	srv.Start(t)
	eventually(t, 10*time.Second, "breaker never closed after Redis came back", func() bool {
		n.Get(ctx, "absent") // not in L1: goes to L2, or probes it
		return !n.Stats().BreakerOpen
	})
	if err := n.Set(ctx, "w", user{ID: "w"}); err != nil {
		t.Fatalf("Set after recovery: %v", err)
	}
}
