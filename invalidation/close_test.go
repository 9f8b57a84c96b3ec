package invalidation

import (
	"slices"
	"testing"
	"time"
)

// TestIdleSubscriptionIsKept: the subscribers read with a cancelled context
// (go-redis applies only a context's deadline to reads, and a reconnection
// on a cancelled context fails at once, so that Close never waits for one;
// see subscriber.receive). Should a go-redis version honour the
// cancellation in reads, every read would fail and the bus would
// resubscribe in a loop: an idle, healthy bus renews no subscription and
// flushes nothing through ten heartbeat intervals, and still delivers.
func TestIdleSubscriptionIsKept(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(t)), WithHeartbeatInterval(100*time.Millisecond))
			a, b := newBus(t, tr.client(t), opts...), newBus(t, tr.client(t), opts...)
			r := newRecorder()
			r.subscribe(t, b, "users")
			// Settled first: while New waits for the subscriptions, the
			// watchdog may already renew one.
			eventually(t, 10*time.Second, "a settled bus", func() bool {
				if !b.healthy.Load() || b.Stats().AnnouncementsSent < 3 {
					return false
				}
				for _, s := range b.subs {
					if s.down.Load() || s.resetPending.Load() {
						return false
					}
				}
				return true
			})
			start, flushes := b.Stats(), r.flushCount()
			eventually(t, 10*time.Second, "10 announcements", func() bool {
				return b.Stats().AnnouncementsSent >= start.AnnouncementsSent+10
			})
			mustPublish(t, ctx, a, "users", "k")
			eventually(t, 5*time.Second, "k delivered", func() bool { return r.has("k") })
			got := b.Stats()
			if n := got.Resubscribes - start.Resubscribes; n != 0 {
				t.Errorf("%d subscriptions renewed on an idle, healthy bus; want 0", n)
			}
			if n := got.Unhealthy - start.Unhealthy; n != 0 {
				t.Errorf("bus turned unhealthy %d times; want 0", n)
			}
			if n := r.flushCount() - flushes; n != 0 {
				t.Errorf("%d flushes on an idle, healthy bus; want 0", n)
			}
		})
	}
}
