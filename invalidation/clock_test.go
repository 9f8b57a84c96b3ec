package invalidation

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/bushook"
)

// Timing tests on a fake clock: time moves only when the test says, and
// each step waits for what the buses do at that instant (their
// announcements coming back over Redis, a watchdog round), so the outcome
// does not depend on how busy the machine is.

// fakeRig runs buses sharing one fake clock.
type fakeRig struct {
	t     *testing.T
	clk   *bushook.Fake
	hb    time.Duration
	buses []*Bus
}

func newFakeRig(t *testing.T, hb time.Duration) *fakeRig {
	return &fakeRig{t: t, clk: bushook.NewFake(), hb: hb}
}

// bus starts a bus on the rig's clock; proven buses are awaited by step.
func (r *fakeRig) bus(opts ...Option) *Bus {
	r.t.Helper()
	clock := WithClock(r.clk)
	b := newBus(r.t, standaloneClient(r.t), append([]Option{WithHeartbeatInterval(r.hb), WithShards(1), clock}, opts...)...)
	r.buses = append(r.buses, b)
	return b
}

// step advances the clock by one heartbeat interval (so past one
// announcement of each bus), then waits until each of the proven buses has
// had that announcement come back and has run a watchdog round after it.
func (r *fakeRig) step(proven ...*Bus) {
	r.t.Helper()
	runs := make([]uint64, len(proven))
	for i, b := range proven {
		runs[i] = b.watchRuns.Load()
	}
	r.clk.Advance(r.hb)
	for i, b := range proven {
		// The announcer ticks at every multiple of hb since New.
		target := int64(b.since() / r.hb * r.hb)
		deadline := time.Now().Add(10 * time.Second)
		for b.proofSent.Load() < target {
			if time.Now().After(deadline) {
				r.t.Fatalf("bus %d: no announcement back: proof %v, now %v, sub0 down %v, stats %+v",
					i, time.Duration(b.proofSent.Load()), b.since(), b.subs[0].down.Load(), b.Stats())
			}
			time.Sleep(100 * time.Microsecond) // polling
		}
		eventually(r.t, 10*time.Second, "a watchdog round", func() bool { return b.watchRuns.Load() > runs[i] })
	}
	// One more round so that the watchdog saw the proof.
	for i, b := range proven {
		runs[i] = b.watchRuns.Load()
	}
	r.clk.Advance(r.hb / 4)
	for i, b := range proven {
		eventually(r.t, 10*time.Second, "a watchdog round", func() bool { return b.watchRuns.Load() > runs[i] })
	}
}

// TestSilentOriginFlushesOnceAndLeavingDoesNot (issue 10 item 11, on a fake
// clock): a bus whose announcements stop is flushed for once, for the
// namespaces it announced only; a bus that leaves with Close is forgotten
// without a flush.
func TestSilentOriginFlushesOnceAndLeavingDoesNot(t *testing.T) {
	ctx := ctxT(t)
	rig := newFakeRig(t, time.Second)
	prefix := WithChannelPrefix(uniqueName(t))
	d := &dropper{out: true}
	a := rig.bus(prefix, withDrop(d.drop))
	leaver := rig.bus(prefix)
	b := rig.bus(prefix)
	users, orders := newRecorder(), newRecorder()
	users.subscribe(t, b, "users")
	orders.subscribe(t, b, "orders")

	mustPublish(t, ctx, a, "users", "a")
	mustPublish(t, ctx, leaver, "users", "l")
	eventually(t, 5*time.Second, "both keys", func() bool { return users.has("a", "l") })
	rig.step(a, leaver, b)
	rig.step(a, leaver, b)
	b.originsMu.Lock()
	known := len(b.origins)
	b.originsMu.Unlock()
	if known != 2 {
		t.Fatalf("B knows %d origins, want 2", known)
	}

	// The leaver says goodbye: B forgets it without a flush.
	if err := leaver.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B to hear the leaver leave", func() bool {
		b.originsMu.Lock()
		defer b.originsMu.Unlock()
		o := b.origins[leaver.origin]
		return o == nil || o.leaving != 0
	})
	// A falls silent: everything it sends is lost.
	d.n.Store(1 << 62)
	for range 3*DefaultSilenceIntervals + 10 {
		rig.step(b)
	}
	if got := b.Stats().Flushes.Silence; got != 1 {
		t.Errorf("silence flushes = %d, want 1 (one for A, none for the bus that left)", got)
	}
	if got := users.flushCount(); got != 1 {
		t.Errorf("users flushes = %d, want 1", got)
	}
	if got := orders.flushCount(); got != 0 {
		t.Errorf("orders flushes = %d, want 0: A never announced orders", got)
	}
	if st := b.Stats(); st.Unhealthy != 0 || st.Gaps != 0 {
		t.Errorf("B: %d unhealthy periods, %d gaps; want none", st.Unhealthy, st.Gaps)
	}
}
