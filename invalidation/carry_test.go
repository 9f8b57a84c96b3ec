package invalidation

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/bushook"
)

// processor is what a carried send needs of a client.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// sendOn returns a SendFunc publishing on c, counting its calls.
func sendOn(c processor, calls *atomic.Int64) SendFunc {
	return func(ctx context.Context, command, channel string, payload []byte) error {
		calls.Add(1)
		if payload == nil {
			return nil
		}
		cmd := redis.NewIntCmd(ctx, command, channel, payload)
		cmd.SetFirstKeyPos(1)
		_ = c.Process(ctx, cmd)
		return cmd.Err()
	}
}

// TestCarry: a carried invalidation reaches the other buses like a
// published one, numbered in order with the channel's other messages; on a
// Cluster it goes on a channel of the node owning the written key.
func TestCarry(t *testing.T) {
	for _, tr := range transports()[:2] {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			ca := tr.client(t)
			opts := append([]Option{WithChannelPrefix(uniqueName(t))}, tr.opts...)
			a := newBus(t, ca, opts...)
			b := newBus(t, tr.client(t), opts...)
			rb := newRecorder()
			rb.subscribe(t, b, "users")
			sub, err := a.Subscribe("users", func([]string) {}, func() {})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			carry := sub.(driver.CarryingSubscription).Carry

			var calls atomic.Int64
			var channel string
			send := sendOn(ca, &calls)
			for i := range 20 {
				key := fmt.Sprintf("k%d", i)
				l2key := "users:" + key
				carried, err := carry(ctx, key, l2key, driver.NewCarrier(ca), func(ctx context.Context, command, ch string, payload []byte) error {
					channel = ch
					return send(ctx, command, ch, payload)
				})
				if err != nil {
					t.Fatalf("carry %s: %v", key, err)
				}
				if !carried {
					t.Fatalf("carry %s: not carried on an idle bus", key)
				}
				if cc, ok := ca.(*redis.ClusterClient); ok {
					kn, err1 := cc.MasterForKey(ctx, l2key)
					cn, err2 := cc.MasterForKey(ctx, channel)
					if err1 != nil || err2 != nil || kn != cn {
						t.Fatalf("%s carried on %s, served by another node than the key's (%v, %v)", key, channel, err1, err2)
					}
				}
				mustPublish(t, ctx, a, "users", "p"+key) // the usual way, between carried ones
			}
			if n := calls.Load(); n != 20 {
				t.Errorf("send called %d times, want 20", n)
			}
			eventually(t, 5*time.Second, "every key at B", func() bool { return rb.count() == 40 })
			if s := b.Stats(); s.Gaps != 0 || rb.flushCount() != 0 {
				t.Errorf("B saw %d gaps and %d flushes; want none", s.Gaps, rb.flushCount())
			}
			if s := a.Stats(); s.MessagesSent != 40 || s.KeysSent != 40 {
				t.Errorf("A sent %d messages with %d keys, want 40 and 40", s.MessagesSent, s.KeysSent)
			}
		})
	}
}

// TestCarryDeclines: the bus does not carry for another client, on a busy
// channel, or once closed; send is not called then.
func TestCarryDeclines(t *testing.T) {
	ctx := ctxT(t)
	c := standaloneClient(t)
	a := newBus(t, c, WithChannelPrefix(uniqueName(t)), WithShards(1))
	sub, err := a.Subscribe("users", func([]string) {}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	carry := sub.(driver.CarryingSubscription).Carry
	var calls atomic.Int64
	send := sendOn(c, &calls)
	try := func(what string, via any) {
		t.Helper()
		if carried, err := carry(ctx, "k", "users:k", driver.NewCarrier(via), send); carried || err != nil {
			t.Errorf("%s: carried %v, %v; want false, nil", what, carried, err)
		}
	}
	try("another client", standaloneClient(t))
	a.pubs[0].sending.Lock() // a round trip in flight
	try("a busy channel", c)
	a.pubs[0].sending.Unlock()
	_ = a.Close()
	try("a closed bus", c)
	if n := calls.Load(); n != 0 {
		t.Errorf("send called %d times, want 0", n)
	}
}

// TestCarryDeliversLocallyAfterTheWrite: the other caches of the namespace
// on the same bus drop the key only after send returned (the write is in
// Redis), never before.
func TestCarryDeliversLocallyAfterTheWrite(t *testing.T) {
	ctx := ctxT(t)
	c := standaloneClient(t)
	a := newBus(t, c, WithChannelPrefix(uniqueName(t)))
	other := newRecorder()
	other.subscribe(t, a, "users")
	sub, err := a.Subscribe("users", func([]string) { t.Error("the carrying registration got its own key") }, func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	carry := sub.(driver.CarryingSubscription).Carry
	var calls atomic.Int64
	send := sendOn(c, &calls)
	carried, err := carry(ctx, "k", "users:k", driver.NewCarrier(c), func(ctx context.Context, command, channel string, payload []byte) error {
		if other.count() != 0 {
			t.Error("another cache of the namespace dropped the key before the write")
		}
		return send(ctx, command, channel, payload)
	})
	if !carried || err != nil {
		t.Fatalf("carry: %v, %v", carried, err)
	}
	if !other.has("k") {
		t.Error("the other cache of the namespace did not drop the key")
	}
}

// TestLostCarriedMessageCaughtByHeartbeat: a carried message arms the
// channel's heartbeat like a queued one, so its loss is found.
func TestLostCarriedMessageCaughtByHeartbeat(t *testing.T) {
	ctx := ctxT(t)
	c := standaloneClient(t)
	var drop atomic.Bool
	dropper := withDrop(func(outgoing bool, m bushook.Msg) bool { return outgoing && m.Kind == uint8(kindKeys) && drop.Load() })
	const hb = 50 * time.Millisecond
	opts := []Option{WithChannelPrefix(uniqueName(t)), WithShards(1), WithHeartbeatInterval(hb),
		WithSilenceIntervals(40), WithLagLimit(5 * time.Second)}
	a := newBus(t, c, append(opts, dropper)...)
	b := newBus(t, standaloneClient(t), opts...)
	r := newRecorder()
	r.subscribe(t, b, "users")
	sub, err := a.Subscribe("users", func([]string) {}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	carry := sub.(driver.CarryingSubscription).Carry
	var calls atomic.Int64
	if carried, err := carry(ctx, "k0", "users:k0", driver.NewCarrier(c), sendOn(c, &calls)); !carried || err != nil {
		t.Fatalf("carry k0: %v, %v", carried, err)
	}
	eventually(t, 5*time.Second, "k0", func() bool { return r.has("k0") })
	drop.Store(true)
	var payloads sync.Map
	carried, err := carry(ctx, "k1", "users:k1", driver.NewCarrier(c), func(ctx context.Context, command, channel string, payload []byte) error {
		payloads.Store("k1", payload == nil)
		return nil
	})
	if !carried || err != nil {
		t.Fatalf("carry k1: %v, %v", carried, err)
	}
	if v, _ := payloads.Load("k1"); v != true {
		t.Error("a dropped message was handed to send")
	}
	eventually(t, 5*time.Second, "the heartbeat to reveal the loss", func() bool {
		s := b.Stats()
		return s.Gaps > 0 && s.Flushes.Gap > 0
	})
}
