package invalidation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/bushook"
	"github.com/tiercache/tiercache/internal/redistest"
)

// trio starts three buses, each on its own client of the same transport.
func trio(t *testing.T, tr transport, opts ...Option) (a, b, c *Bus) {
	t.Helper()
	opts = append([]Option{WithChannelPrefix(uniqueName(t))}, append(tr.opts, opts...)...)
	return newBus(t, tr.client(t), opts...), newBus(t, tr.client(t), opts...), newBus(t, tr.client(t), opts...)
}

func keyList(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

func TestPublishReachesOtherBuses(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			a, b, c := trio(t, tr)
			ra, rb, rc, rOther := newRecorder(), newRecorder(), newRecorder(), newRecorder()
			ra.subscribe(t, a, "users")
			rb.subscribe(t, b, "users")
			rc.subscribe(t, c, "users")
			rOther.subscribe(t, b, "orders")

			keys := keyList("user:", 50)
			if err := a.Publish(ctx, "users", keys); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			eventually(t, 5*time.Second, "B and C to get every key", func() bool {
				return rb.has(keys...) && rc.has(keys...)
			})

			// A's own registration got the keys once, locally, at Publish.
			// B publishes the same keys. Per channel, Redis delivers in the
			// order it accepted, so once A has B's keys it has also seen its
			// own message come back: it must have ignored it.
			if err := b.Publish(ctx, "users", keys); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			eventually(t, 5*time.Second, "A to get B's keys", func() bool {
				ra.mu.Lock()
				defer ra.mu.Unlock()
				for _, k := range keys {
					if ra.keys[k] < 2 {
						return false
					}
				}
				return true
			})
			ra.mu.Lock()
			for _, k := range keys {
				if n := ra.keys[k]; n != 2 {
					t.Errorf("A invalidated %q %d times, want 2 (local delivery and B's; its own message must be ignored)", k, n)
				}
			}
			ra.mu.Unlock()
			if n := rOther.count(); n != 0 {
				t.Errorf("the orders cache got %d keys of users", n)
			}
			for name, bus := range map[string]*Bus{"A": a, "B": b, "C": c} {
				if s := bus.Stats(); s.Gaps != 0 || s.DecodeErrors != 0 {
					t.Errorf("%s: %d gaps, %d decode errors; want none", name, s.Gaps, s.DecodeErrors)
				}
			}
			// B counts the keys right after its callback returned.
			eventually(t, 5*time.Second, "B's stats to count the keys and their lag", func() bool {
				sb := b.Stats()
				return sb.KeysInvalidated == uint64(len(keys)) && sb.Lag.Total() > 0
			})
		})
	}
}

func TestRemoteFlushAndUnsubscribe(t *testing.T) {
	ctx := ctxT(t)
	a, b, _ := trio(t, transports()[0])
	users, orders := newRecorder(), newRecorder()
	sub, err := b.Subscribe("users", users.invalidate, users.flush)
	if err != nil {
		t.Fatal(err)
	}
	orders.subscribe(t, b, "orders")

	if err := a.PublishFlush(ctx, "users"); err != nil {
		t.Fatalf("PublishFlush: %v", err)
	}
	eventually(t, 5*time.Second, "users to be flushed", func() bool { return users.flushCount() == 1 })
	if got := b.Stats().Flushes.Remote; got != 1 {
		t.Errorf("Flushes.Remote = %d, want 1", got)
	}

	sub.Unsubscribe()
	sub.Unsubscribe() // safe twice
	if err := a.Publish(ctx, "users", []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, "orders", []string{"2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "orders to get its key", func() bool { return orders.has("2") })
	if users.count() != 0 {
		t.Errorf("users got keys after unsubscribe: %v", users.sortedKeys())
	}
	if n := orders.flushCount(); n != 0 {
		t.Errorf("orders flushed %d times by a flush of users", n)
	}
}

// dropper drops the next n matching messages in one direction.
type dropper struct {
	out  bool    // outgoing, else incoming
	kind msgKind // 0: any kind
	n    atomic.Int64
}

func (d *dropper) drop(out bool, m bushook.Msg) bool {
	if out != d.out || (d.kind != 0 && msgKind(m.Kind) != d.kind) {
		return false
	}
	for {
		n := d.n.Load()
		if n <= 0 {
			return false
		}
		if d.n.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func TestGapFlushes(t *testing.T) {
	for _, tr := range transports()[:2] {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			d := &dropper{out: true, kind: kindKeys}
			prefix := WithChannelPrefix(uniqueName(t))
			// One channel and no heartbeat during the test: the gap is
			// found by the next message.
			opts := append(slices.Clone(tr.opts), prefix, WithShards(1), WithHeartbeatInterval(time.Minute))
			a := newBus(t, tr.client(t), append(opts, withDrop(d.drop))...)
			b := newBus(t, tr.client(t), opts...)
			r := newRecorder()
			r.subscribe(t, b, "users")

			mustPublish(t, ctx, a, "users", "k0")
			eventually(t, 5*time.Second, "k0", func() bool { return r.has("k0") })

			d.n.Store(1)
			mustPublish(t, ctx, a, "users", "k1") // lost
			mustPublish(t, ctx, a, "users", "k2")
			eventually(t, 5*time.Second, "k2", func() bool { return r.has("k2") })
			if r.has("k1") {
				t.Fatalf("k1 arrived although dropped")
			}
			s := b.Stats()
			if s.Gaps != 1 || s.Flushes.Gap != 1 || r.flushCount() != 1 {
				t.Errorf("gaps %d, gap flushes %d, cache flushes %d; want 1, 1, 1", s.Gaps, s.Flushes.Gap, r.flushCount())
			}
			if got := a.Stats().Dropped; got != 1 {
				t.Errorf("A dropped %d messages, want 1", got)
			}
		})
	}
}

func mustPublish(t *testing.T, ctx context.Context, b *Bus, ns string, keys ...string) {
	t.Helper()
	if err := b.Publish(ctx, ns, keys); err != nil {
		t.Fatalf("Publish(%q, %v): %v", ns, keys, err)
	}
}

func TestLostLastMessageCaughtByHeartbeat(t *testing.T) {
	for _, tr := range transports()[:2] {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			d := &dropper{out: true, kind: kindKeys}
			const hb = 50 * time.Millisecond
			opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(t)), WithShards(1),
				WithHeartbeatInterval(hb), WithSilenceIntervals(40), WithLagLimit(5*time.Second))
			a := newBus(t, tr.client(t), append(opts, withDrop(d.drop))...)
			b := newBus(t, tr.client(t), opts...)
			r := newRecorder()
			r.subscribe(t, b, "users")

			mustPublish(t, ctx, a, "users", "k0")
			eventually(t, 5*time.Second, "k0", func() bool { return r.has("k0") })
			d.n.Store(1)
			start := time.Now()
			mustPublish(t, ctx, a, "users", "k1") // lost, and nothing follows
			eventually(t, 5*time.Second, "the heartbeat to reveal the loss", func() bool {
				s := b.Stats()
				return s.Gaps > 0 && s.Flushes.Gap > 0
			})
			t.Logf("lost last message detected after %v (heartbeat interval %v)", time.Since(start), hb)
			if s := b.Stats(); s.Gaps != 1 || s.Flushes.Gap != 1 {
				t.Errorf("gaps %d, gap flushes %d; want 1, 1", s.Gaps, s.Flushes.Gap)
			}
		})
	}
}

// TestDeafBusTurnsUnhealthy: a bus that hears nothing, not even its own
// announcements, is unhealthy: it flushes at once and again while it lasts,
// renews its subscription, and recovers when it hears again.
func TestDeafBusTurnsUnhealthy(t *testing.T) {
	ctx := ctxT(t)
	d := &dropper{}
	// A lag limit far above a busy machine's scheduling delays: only the
	// deafness makes B unhealthy.
	opts := []Option{WithChannelPrefix(uniqueName(t)), WithHeartbeatInterval(20 * time.Millisecond), WithLagLimit(time.Second)}
	a := newBus(t, standaloneClient(t), opts...)
	b := newBus(t, standaloneClient(t), append(opts, withDrop(d.drop))...)
	r := newRecorder()
	r.subscribe(t, b, "users")

	d.n.Store(1 << 62) // B hears nothing, not even itself
	eventually(t, 5*time.Second, "flushes while unhealthy", func() bool { return b.Stats().Flushes.Unhealthy >= 3 })
	eventually(t, 5*time.Second, "the subscription to be renewed", func() bool { return b.Stats().Resubscribes > 0 })
	if st := b.Status(); st.Healthy {
		t.Error("Status says healthy while deaf")
	}
	d.n.Store(0)
	eventually(t, 5*time.Second, "B healthy again", func() bool { return b.Status().Healthy })
	mustPublish(t, ctx, a, "users", "after")
	eventually(t, 5*time.Second, "a key after the silence", func() bool { return r.has("after") })
	// A renewal requested while deaf may still run after the recovery
	// (one more short unhealthy period while it resubscribes).
	eventually(t, 5*time.Second, "B healthy at the end", func() bool { return b.Status().Healthy })
}

func TestClientKillResubscribes(t *testing.T) {
	ctx := ctxT(t)
	srv := redistest.NewServer(t)
	opts := []Option{WithChannelPrefix(uniqueName(t))}
	a := newBus(t, srv.Client(t), opts...)
	b := newBus(t, srv.Client(t), opts...)
	r := newRecorder()
	r.subscribe(t, b, "users")
	mustPublish(t, ctx, a, "users", "before")
	eventually(t, 5*time.Second, "before", func() bool { return r.has("before") })

	admin := srv.Client(t)
	n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	if err != nil || n < 2 {
		t.Fatalf("CLIENT KILL TYPE pubsub: killed %d, %v; want both subscriptions", n, err)
	}
	eventually(t, 5*time.Second, "B to resubscribe and flush", func() bool {
		s := b.Stats()
		return s.Resubscribes > 0 && s.Flushes.Resubscribe > 0 && r.flushCount() > 0
	})
	mustPublish(t, ctx, a, "users", "after")
	eventually(t, 5*time.Second, "after", func() bool { return r.has("after") })
}

// TestRedisRestart: while Redis is down the bus is unhealthy and flushes
// (again every D/2), publishing fails, and
// once Redis is back the bus subscribes again, flushes, and delivers.
func TestRedisRestart(t *testing.T) {
	ctx := ctxT(t)
	srv := redistest.NewServer(t)
	opts := []Option{WithChannelPrefix(uniqueName(t)), WithHeartbeatInterval(50 * time.Millisecond),
		WithPublishTimeout(100 * time.Millisecond)}
	a := newBus(t, srv.Client(t), opts...)
	b := newBus(t, srv.Client(t), opts...)
	r := newRecorder()
	r.subscribe(t, b, "users")
	mustPublish(t, ctx, a, "users", "before")
	eventually(t, 5*time.Second, "before", func() bool { return r.has("before") })

	srv.Stop(t)
	eventually(t, 5*time.Second, "two flushes while unhealthy", func() bool { return b.Stats().Flushes.Unhealthy >= 2 })
	if err := a.Publish(ctx, "users", []string{"lost"}); !errors.Is(err, ErrPublish) {
		t.Errorf("Publish with Redis down = %v, want ErrPublish", err)
	}
	resubscribed := b.Stats().Resubscribes
	srv.Start(t)
	eventually(t, 10*time.Second, "B to subscribe again", func() bool { return b.Stats().Resubscribes > resubscribed })
	eventually(t, 10*time.Second, "a key after the restart", func() bool {
		// A may still be reconnecting; retry the publish until B gets it.
		_ = a.Publish(ctx, "users", []string{"after"})
		return r.has("after")
	})
}

func TestBurstIsBatched(t *testing.T) {
	for _, tr := range transports()[:2] {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			// 10,000 goroutines starting at once slow everything down under
			// the race detector: be patient with Redis.
			a, b, c := trio(t, tr, WithPublishTimeout(10*time.Second))
			rb, rc := newRecorder(), newRecorder()
			rb.subscribe(t, b, "users")
			rc.subscribe(t, c, "users")

			// 10,000 writers, one key each, all at once.
			const total = 10_000
			var wg sync.WaitGroup
			errs := make(chan error, total)
			start := make(chan struct{})
			for i := range total {
				wg.Go(func() {
					<-start
					if err := a.Publish(ctx, "users", []string{fmt.Sprintf("k%d", i)}); err != nil {
						errs <- err
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("Publish: %v", err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for rb.count() != total || rc.count() != total {
				if time.Now().After(deadline) {
					sb, sc := b.Stats(), c.Stats()
					msg := fmt.Sprintf("B got %d keys, C %d, of %d; stats of A %+v, B %+v, C %+v",
						rb.count(), rc.count(), total, a.Stats(), sb, sc)
					if sb.Resubscribes+sc.Resubscribes > 0 {
						// On a starved machine a channel can look silent and be
						// resubscribed: the loss is real and was flushed for,
						// as designed, but this test cannot count keys then.
						t.Skip("messages lost to a resubscription: " + msg)
					}
					t.Fatal(msg)
				}
				time.Sleep(time.Millisecond) // polling interval
			}
			s := a.Stats()
			t.Logf("%d keys in %d messages (%.1f keys per message)", s.KeysSent, s.MessagesSent, float64(s.KeysSent)/float64(s.MessagesSent))
			if s.KeysSent != total || s.MessagesSent > total/10 {
				t.Errorf("sent %d keys in %d messages; want %d keys in far fewer messages", s.KeysSent, s.MessagesSent, total)
			}
		})
	}
}

// TestLargePublishIsSplit sends more keys than one message holds: the
// publisher sends several messages in one pipeline.
func TestLargePublishIsSplit(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(t)), WithShards(1))
			a := newBus(t, tr.client(t), opts...)
			b := newBus(t, tr.client(t), opts...)
			r := newRecorder()
			r.subscribe(t, b, "users")
			keys := keyList("a-rather-long-key-name-to-fill-messages:", 3*MaxKeysPerMessage+7)
			mustPublish(t, ctx, a, "users", keys...)
			eventually(t, 10*time.Second, "every key", func() bool { return r.count() == len(keys) })
			if got := a.Stats().MessagesSent; got < 4 {
				t.Errorf("%d keys sent in %d messages; the limit is %d keys per message", len(keys), got, MaxKeysPerMessage)
			}
			if s := b.Stats(); s.DecodeErrors != 0 || s.Gaps != 0 {
				t.Errorf("decode errors %d, gaps %d", s.DecodeErrors, s.Gaps)
			}
		})
	}
}

func TestPublishRejects(t *testing.T) {
	ctx := ctxT(t)
	a := newBus(t, standaloneClient(t), WithChannelPrefix(uniqueName(t)))
	long := string(make([]byte, MaxKeyLen+1))
	tests := []struct {
		name string
		ns   string
		keys []string
		want error
	}{
		{"empty namespace", "", []string{"k"}, ErrNamespace},
		{"long namespace", string(make([]byte, MaxNamespaceLen+1)), []string{"k"}, ErrNamespace},
		{"long key", "users", []string{"k", long}, ErrKeyTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := a.Publish(ctx, tt.ns, tt.keys); !errors.Is(err, tt.want) {
				t.Errorf("Publish error = %v, want %v", err, tt.want)
			}
		})
	}
	if err := a.Publish(ctx, "users", nil); err != nil {
		t.Errorf("Publish of no key = %v, want nil", err)
	}
	if _, err := a.Subscribe("users", nil, func() {}); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Subscribe with nil callback = %v, want ErrInvalidOption", err)
	}
}

func TestClosed(t *testing.T) {
	ctx := ctxT(t)
	a := newBus(t, standaloneClient(t), WithChannelPrefix(uniqueName(t)))
	r := newRecorder()
	r.subscribe(t, a, "users")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// No callback runs after Close returned, local deliveries included.
	defer func() {
		if n, f := r.count(), r.flushCount(); n != 0 || f != 0 {
			t.Errorf("after Close: %d keys invalidated, %d flushes; want none", n, f)
		}
	}()
	if err := a.PublishFlush(ctx, "users"); !errors.Is(err, ErrClosed) {
		t.Errorf("PublishFlush after Close = %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := a.Publish(ctx, "users", []string{"k"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := a.Subscribe("users", func([]string) {}, func() {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
}

func TestPublishErrorWithoutRedis(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	a := newBus(t, c, WithStartTimeout(0), WithPublishTimeout(200*time.Millisecond))
	err := a.Publish(ctxT(t), "users", []string{"k"})
	if !errors.Is(err, ErrPublish) {
		t.Errorf("Publish without Redis = %v, want ErrPublish", err)
	}
	start := time.Now()
	_ = a.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v without Redis", d)
	}
}

// TestCloseStopsEveryGoroutine runs alone (no t.Parallel at the top level
// of this package), so goleak sees only what this test started.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	for _, tr := range transports()[:2] {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			// A throwaway client first, so that go-redis's process-wide
			// goroutines (if any) exist before the snapshot.
			warm := tr.client(t)
			opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(t)), WithHeartbeatInterval(100*time.Millisecond))
			wb := newBus(t, warm, opts...)
			_ = wb.Close()
			ignore := goleak.IgnoreCurrent()

			ca, cb := tr.client(t), tr.client(t)
			a, err := New(ca, opts...)
			if err != nil {
				t.Fatal(err)
			}
			b, err := New(cb, opts...)
			if err != nil {
				t.Fatal(err)
			}
			r := newRecorder()
			if _, err := b.Subscribe("users", r.invalidate, r.flush); err != nil {
				t.Fatal(err)
			}
			mustPublish(t, ctx, a, "users", "k")
			eventually(t, 5*time.Second, "k", func() bool { return r.has("k") })
			_ = a.Close()
			_ = b.Close()
			_ = ca.(interface{ Close() error }).Close()
			_ = cb.(interface{ Close() error }).Close()
			goleak.VerifyNone(t, ignore)
		})
	}
}
