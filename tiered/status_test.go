package tiered_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// TestStatusLive: Status reports the flights and loader calls running now,
// the L1's size, and Closed.
func TestStatusLive(t *testing.T) {
	n := newNode[user](t, "status", nil)
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := n.GetOrLoad(ctx, "slow", func(context.Context, string) (user, error) {
			close(started)
			<-release
			return user{ID: "slow"}, nil
		})
		done <- err
	}()
	<-started
	st := n.Status()
	if st.Name != "status" || st.Flights != 1 || st.LoadsInFlight != 1 || st.Closed {
		t.Fatalf("during a load: name %q, flights %d, loads in flight %d, closed %v; want status, 1, 1, false",
			st.Name, st.Flights, st.LoadsInFlight, st.Closed)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		key := fmt.Sprint("k", i)
		if _, err := n.GetOrLoad(ctx, key, func(context.Context, string) (user, error) { return user{ID: key}, nil }); err != nil {
			t.Fatal(err)
		}
	}
	n.l1.Wait()
	st = n.Status()
	if st.Flights != 0 || st.LoadsInFlight != 0 {
		t.Fatalf("after the loads: flights %d, loads in flight %d; want 0, 0", st.Flights, st.LoadsInFlight)
	}
	if !st.L1.Present || !st.L1.Sized || st.L1.Entries != 11 || st.L1.Cost != 11 {
		t.Fatalf("L1 = %+v; want present, sized, 11 entries of cost 1", st.L1)
	}
	if st.Stats.Loads != 11 {
		t.Fatalf("Stats.Loads = %d, want 11", st.Stats.Loads)
	}
	if len(st.Breakers) != 0 {
		t.Fatalf("an L1-only cache reports breakers: %+v", st.Breakers)
	}
	n.Close()
	if st := n.Status(); !st.Closed {
		t.Fatal("Status after Close: Closed is false")
	}
}

// TestStatusBreaker: the breaker's state shows in Status: closed, then open
// while Redis is down.
func TestStatusBreaker(t *testing.T) {
	srv := redistest.NewServer(t)
	n := newNode[user](t, redistest.Name(t), srv.Client(t),
		tiered.WithRemoteTimeout(200*time.Millisecond), tiered.WithCircuitBreaker(2, time.Hour))
	ctx := context.Background()
	var loader countingLoader
	if _, err := n.GetOrLoad(ctx, "a", loader.load); err != nil {
		t.Fatal(err)
	}
	if b := n.Status().Breakers; len(b) != 1 || b[0].State != tiered.BreakerClosed {
		t.Fatalf("breakers with Redis up = %+v, want one closed", b)
	}
	srv.Stop(t)
	for i := range 3 {
		_, _ = n.GetOrLoad(ctx, fmt.Sprint("down", i), loader.load)
	}
	b := n.Status().Breakers
	if len(b) != 1 || b[0].State != tiered.BreakerOpen || b[0].Openings != 1 || b[0].Rejected == 0 {
		t.Fatalf("breakers with Redis down = %+v, want one open, opened once, with rejected calls", b)
	}
}
