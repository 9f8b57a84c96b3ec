package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// unavailableErr is an error marked the way package remote marks
// unavailability.
type unavailableErr struct{}

func (unavailableErr) Error() string     { return "connection refused" }
func (unavailableErr) Unavailable() bool { return true }

// answeredErr is an error marked the way package remote marks a Cluster's
// CLUSTERDOWN refusal: unavailable, but answered by the shard's node.
type answeredErr struct{}

func (answeredErr) Error() string     { return "CLUSTERDOWN The cluster is down" }
func (answeredErr) Unavailable() bool { return true }
func (answeredErr) Answered() bool    { return true }

type openings struct {
	mu     sync.Mutex
	shards []string
}

func (o *openings) record(shard string, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.shards = append(o.shards, shard)
}

func (o *openings) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.shards)
}

func TestBreakerCountsOnlyUnavailability(t *testing.T) {
	clk := newFakeClock()
	var op openings
	set := newBreakers(3, time.Second, clk.Now, op.record)
	b := set.of("")
	alive := context.Background()
	cancelled, cancel := context.WithCancel(alive)
	cancel()
	expired, cancel2 := context.WithDeadline(alive, clk.Now().Add(-time.Hour))
	defer cancel2()
	ours, cancel3 := context.WithTimeoutCause(alive, time.Nanosecond, errRemoteTimeout)
	defer cancel3()
	<-ours.Done()

	neutralCalls := []struct {
		name string
		ctx  context.Context
		err  error
	}{
		{"caller cancelled", cancelled, context.Canceled},
		{"caller deadline", expired, context.DeadlineExceeded},
		{"validation", alive, errors.New("remote: key too long")},
		{"NOPERM", alive, errors.New("NOPERM this user has no permissions to run the 'evalsha' command")},
		{"unmarked wrapped deadline", expired, unavailableErr{}}, // the caller's ctx ended first
		// Issue 20: a Cluster refusing every key while another shard
		// fails over, also when the client's retries of the refusal ran
		// out our remote timeout.
		{"answered refusal", alive, answeredErr{}},
		{"answered refusal past our remote timeout", ours, fmt.Errorf("remote: SET: %w", answeredErr{})},
	}
	for _, c := range neutralCalls {
		for range 10 {
			tk, ok := b.allow()
			if !ok {
				t.Fatalf("%s: call refused", c.name)
			}
			b.record(tk, classify(c.ctx, c.err), c.err)
		}
		if b.isOpen() || op.count() != 0 {
			t.Fatalf("%s: 10 calls opened the breaker", c.name)
		}
	}
	// Our own remote timeout counts, as do marked errors.
	for i, ctx := range []context.Context{ours, alive, alive} {
		tk, _ := b.allow()
		err := error(unavailableErr{})
		if i == 0 {
			err = context.DeadlineExceeded
		}
		b.record(tk, classify(ctx, err), err)
	}
	if !b.isOpen() || op.count() != 1 {
		t.Fatalf("open %v, openings %d after 3 unavailable calls; want open once", b.isOpen(), op.count())
	}
}

func TestBreakerGenerations(t *testing.T) {
	clk := newFakeClock()
	var op openings
	set := newBreakers(2, time.Second, clk.Now, op.record)
	b := set.of("")
	downErr := unavailableErr{}
	// Five calls admitted while closed; two fail and open the breaker.
	var early []ticket
	for range 5 {
		tk, ok := b.allow()
		if !ok {
			t.Fatal("closed breaker refused a call")
		}
		early = append(early, tk)
	}
	b.record(early[0], down, downErr)
	b.record(early[1], down, downErr)
	if !b.isOpen() || op.count() != 1 {
		t.Fatalf("open %v, openings %d; want open once", b.isOpen(), op.count())
	}
	// A call admitted before the opening succeeds late: the breaker stays
	// open; late failures do not report again.
	b.record(early[2], healthy, nil)
	b.record(early[3], down, downErr)
	b.record(early[4], down, downErr)
	if !b.isOpen() || op.count() != 1 {
		t.Fatalf("after late results: open %v, openings %d; want still open, one report", b.isOpen(), op.count())
	}
	if _, ok := b.allow(); ok {
		t.Fatal("open breaker admitted a call during the cool-down")
	}
	// After the cool-down one probe is admitted, not two.
	clk.Advance(time.Second)
	probe, ok := b.allow()
	if !ok || !probe.probe {
		t.Fatalf("after the cool-down: ok %v probe %v; want a probe", ok, probe.probe)
	}
	if _, ok := b.allow(); ok {
		t.Fatal("a second call was admitted while the probe is in flight")
	}
	// A failed probe keeps it open for another cool-down, without a report.
	b.record(probe, down, downErr)
	if !b.isOpen() || op.count() != 1 {
		t.Fatalf("after a failed probe: open %v, openings %d", b.isOpen(), op.count())
	}
	if _, ok := b.allow(); ok {
		t.Fatal("admitted right after a failed probe")
	}
	clk.Advance(time.Second)
	probe, ok = b.allow()
	if !ok {
		t.Fatal("no probe after the second cool-down")
	}
	// A neutral probe (e.g. the caller gave up) leaves it open but frees the
	// probe slot.
	b.record(probe, neutral, context.Canceled)
	probe, ok = b.allow()
	if !ok || !probe.probe {
		t.Fatal("no new probe after a neutral one")
	}
	b.record(probe, healthy, nil)
	if b.isOpen() {
		t.Fatal("a successful probe did not close the breaker")
	}
	// Reopening is a new opening, reported once more.
	for range 2 {
		tk, _ := b.allow()
		b.record(tk, down, downErr)
	}
	if !b.isOpen() || op.count() != 2 || b.opened.Load() != 2 {
		t.Fatalf("open %v, reports %d, openings %d; want a second opening", b.isOpen(), op.count(), b.opened.Load())
	}
}

func TestBreakerPerShard(t *testing.T) {
	clk := newFakeClock()
	var op openings
	set := newBreakers(1, time.Second, clk.Now, op.record)
	a, b := set.of("10.0.0.1:6379"), set.of("10.0.0.2:6379")
	if set.of("10.0.0.1:6379") != a {
		t.Fatal("one shard got two breakers")
	}
	tk, _ := a.allow()
	a.record(tk, down, unavailableErr{})
	if !a.isOpen() || b.isOpen() {
		t.Fatalf("shard a open %v, shard b open %v; want only a", a.isOpen(), b.isOpen())
	}
	if _, ok := b.allow(); !ok {
		t.Fatal("shard b refused a call while only shard a is down")
	}
	if op.shards[0] != "10.0.0.1:6379" {
		t.Fatalf("opening reported for %q", op.shards[0])
	}
}

func TestLogLimiter(t *testing.T) {
	clk := newFakeClock()
	l := newLogLimiter(3, time.Second, clk.Now)
	logged := 0
	for range 100 {
		if ok, _ := l.take(); ok {
			logged++
		}
	}
	if logged != 3 {
		t.Fatalf("a burst of 100 logged %d lines, want 3", logged)
	}
	clk.Advance(time.Second)
	ok, suppressed := l.take()
	if !ok || suppressed != 97 {
		t.Fatalf("a second later: ok %v, suppressed %d; want a line counting 97 suppressed", ok, suppressed)
	}
	if ok, _ := l.take(); ok {
		t.Fatal("a second line within the same second")
	}
}
