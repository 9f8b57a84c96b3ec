// Package bushook is the test-only seam of package invalidation: message
// loss injection, and Fake, a manual driver.Clock for tests of anything
// timed (pass it with invalidation.WithClock, tiered.WithClock, ...). It is
// internal so that neither is part of the public API; tests turn Hooks into
// an invalidation.Option with Option:
//
//	opt := bushook.Option(bushook.Hooks{Drop: drop}).(invalidation.Option)
package bushook

import (
	"sort"
	"sync"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Msg is what a drop function sees of a bus message.
type Msg struct {
	Kind      uint8 // 1 keys, 2 flush, 3 heartbeat, 4 announcement, 5 lease wait, 6 lease filled
	Origin    uint64
	Seq       uint64
	Namespace string
	Keys      []string
}

// Hooks are the test hooks of one bus. Zero fields are off.
type Hooks struct {
	// Drop is called for every message the bus is about to publish
	// (outgoing: the message takes its sequence number but is not sent,
	// and Publish reports success) and every message it received (the
	// message is discarded before anything looks at it). Returning true
	// drops the message. It is called concurrently and must not block.
	Drop func(outgoing bool, m Msg) bool
}

// Option turns Hooks into an invalidation.Option (as an any, to be
// asserted). Package invalidation sets it in its init.
var Option func(Hooks) any

// Fake is a manual clock: time moves only in Advance, which fires the
// timers that come due, in order. Safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// NewFake returns a fake clock at a fixed instant.
func NewFake() *Fake { return &Fake{now: time.Unix(1_700_000_000, 0)} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer firing when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) driver.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.timers = append(f.timers, t)
	t.arm(d)
	return t
}

// NewTicker returns a ticker firing every d from now+d.
func (f *Fake) NewTicker(d time.Duration) driver.Timer {
	if d <= 0 {
		panic("bushook: non-positive ticker period")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), period: d}
	f.timers = append(f.timers, t)
	t.at, t.active = f.now.Add(d), true
	return t
}

// arm starts t for d; a d of zero or less fires at once. Under f.mu.
func (t *fakeTimer) arm(d time.Duration) {
	select {
	case <-t.c:
	default:
	}
	if d <= 0 {
		t.active = false
		t.c <- t.f.now
		return
	}
	t.at, t.active = t.f.now.Add(d), true
}

// Advance moves the time by d, firing every timer due on the way at its
// own instant. A tick nobody received yet is replaced by the newer one.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	for {
		var due []*fakeTimer
		for _, t := range f.timers {
			if t.active && !t.at.After(end) {
				due = append(due, t)
			}
		}
		if len(due) == 0 {
			break
		}
		sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
		t := due[0]
		if t.at.After(f.now) {
			f.now = t.at
		}
		if t.period > 0 {
			t.at = t.at.Add(t.period)
			select {
			case t.c <- f.now:
			default: // dropped, as time.Ticker does
			}
			continue
		}
		t.active = false
		select {
		case <-t.c:
		default:
		}
		t.c <- f.now
	}
	f.now = end
	f.mu.Unlock()
}

type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	at     time.Time
	active bool
	period time.Duration // a ticker's
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Reset(d time.Duration) {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.period > 0 {
		t.period, t.at, t.active = d, t.f.now.Add(d), true
		return
	}
	t.arm(d)
}

func (t *fakeTimer) Stop() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.active = false
}

var _ driver.Clock = (*Fake)(nil)
