package invalidation

import (
	"testing"
	"time"
)

// TestUnhealthyWhileNewWaits: a bus whose watchdog finds it unhealthy
// while New still waits for it (its own announcements never come back)
// says so once New returned. New used to mark every bus healthy on its
// way out, over the watchdog's verdict: Status said healthy while the
// watchdog went on flushing, and the bus never counted an unhealthy
// period again until it had recovered.
func TestUnhealthyWhileNewWaits(t *testing.T) {
	rig := newFakeRig(t, time.Second)
	d := &dropper{out: true, kind: kindAnnounce}
	d.n.Store(1 << 62)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rig.clk.Advance(rig.hb / 4)
			time.Sleep(time.Millisecond) // pacing the fake clock, not synchronisation
		}
	}()
	b := rig.bus(WithChannelPrefix(uniqueName(t)), withDrop(d.drop), WithStartTimeout(300*time.Millisecond))
	close(stop)
	<-done
	if b.Stats().Unhealthy == 0 {
		t.Fatal("the bus did not turn unhealthy while New waited: the test proves nothing")
	}
	if b.Status().Healthy {
		t.Fatal("Status says healthy; the watchdog found the bus unhealthy and it has not recovered (its announcements are all dropped)")
	}
	runs := b.watchRuns.Load()
	rig.clk.Advance(rig.hb / 4)
	eventually(t, 10*time.Second, "a watchdog round", func() bool { return b.watchRuns.Load() > runs })
	if b.Status().Healthy {
		t.Fatal("Status says healthy after one more watchdog round")
	}
}
