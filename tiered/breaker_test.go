package tiered_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
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

// Issue 9 observation 1: bad input never opens the breaker.
func TestBreakerIgnoresBadInput(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		n := newNode[string](t, redistest.Name(t), rdb, tiered.WithCircuitBreaker(2, time.Minute))
		ctx := context.Background()
		long := strings.Repeat("k", 2000)
		for range 5 {
			// The key is too long for L2: the loader answers, L2 is not blamed.
			if v, err := n.GetOrLoad(ctx, long, func(context.Context, string) (string, error) { return "v", nil }); err != nil || v != "v" {
				t.Fatalf("GetOrLoad(long key) = %q, %v", v, err)
			}
			if err := n.Set(ctx, "big", strings.Repeat("x", 2<<20)); !errors.Is(err, remote.ErrValueTooLarge) {
				t.Fatalf("Set(2 MiB) = %v, want ErrValueTooLarge", err)
			}
		}
		if st := n.Stats(); st.BreakerOpen || st.BreakerOpenings != 0 {
			t.Fatalf("breaker open %v, openings %d after bad input; want closed", st.BreakerOpen, st.BreakerOpenings)
		}
		if err := n.Set(ctx, "ordinary", "v"); err != nil {
			t.Fatalf("Set of an ordinary key after bad input: %v", err)
		}
	})
}

// Issue 9 observation 2: callers' own deadlines never open the breaker.
func TestBreakerIgnoresCallerDeadlines(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		n := newNode[string](t, redistest.Name(t), rdb, tiered.WithCircuitBreaker(2, time.Minute))
		past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		cancelled, cancel2 := context.WithCancel(context.Background())
		cancel2()
		for range 5 {
			if _, _, err := n.Get(past, "k"); err == nil {
				t.Fatal("Get with an expired ctx succeeded")
			}
			n.Get(cancelled, "k")
			n.Set(past, "k", "v")
		}
		if st := n.Stats(); st.BreakerOpen || st.BreakerOpenings != 0 {
			t.Fatalf("breaker open %v, openings %d after expired callers; want closed", st.BreakerOpen, st.BreakerOpenings)
		}
		if err := n.Set(context.Background(), "k", "v"); err != nil {
			t.Fatalf("Set after expired callers: %v", err)
		}
	})
}

// Issue 9 observation 4: one report per opening, even when calls admitted
// before the opening succeed during the cool-down.
func TestBreakerReportsOncePerOpening(t *testing.T) {
	srv := redistest.NewServer(t)
	n := newNode[user](t, redistest.Name(t), srv.Client(t),
		tiered.WithRemoteTimeout(50*time.Millisecond), tiered.WithCircuitBreaker(3, time.Hour))
	ctx := context.Background()
	var loader countingLoader
	n.GetOrLoad(ctx, "warm", loader.load)
	// Freeze Redis: calls hang until the remote timeout, then count.
	srv.Pause(t)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			n.GetOrLoad(ctx, fmt.Sprint("k", i), loader.load)
		})
	}
	wg.Wait()
	srv.Resume(t)
	// Calls admitted before the opening that now succeed must not close it.
	for i := range 50 {
		n.Get(ctx, fmt.Sprint("k", i))
	}
	st := n.Stats()
	if !st.BreakerOpen || st.BreakerOpenings != 1 {
		t.Fatalf("open %v, openings %d; want open, once", st.BreakerOpen, st.BreakerOpenings)
	}
	reports := 0
	for _, err := range n.errors.all() {
		if errors.Is(err, tiered.ErrCircuitOpen) {
			reports++
		}
	}
	if reports != 1 {
		t.Fatalf("%d reports of the opening, want 1", reports)
	}
}

// Handled errors are logged at a bounded rate by the default handler.
func TestHandledErrorsLogRate(t *testing.T) {
	srv := redistest.NewServer(t)
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	l2, err := remote.New(srv.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[string](redistest.Name(t), nil, l2, tiered.WithLogger(logger), tiered.WithCircuitBreaker(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv.Stop(t)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			c.GetOrLoad(context.Background(), fmt.Sprint("k", i), func(context.Context, string) (string, error) { return "v", nil })
		})
	}
	wg.Wait()
	// The burst, plus at most one line per interval that passed.
	limit := tiered.LogBurst + int(time.Since(start)/tiered.LogInterval) + 1
	if lines := strings.Count(buf.String(), "\n"); lines > limit {
		t.Fatalf("200 handled errors logged %d lines; want at most %d", lines, limit)
	}
	if st := c.Stats(); st.HandledErrors < 200 {
		t.Fatalf("handled errors = %d, want all 200 counted", st.HandledErrors)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
