package invalidation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestNewFailsLoudlyOnRedisRefusals (issue 9 item 11): a wrong password, a
// user without the pub/sub permissions or the channel pattern, and a server
// without sharded pub/sub fail New at once with an error naming the
// problem.
func TestNewFailsLoudlyOnRedisRefusals(t *testing.T) {
	srv := redistest.NewServer(t, "--rename-command", "SSUBSCRIBE", "SSUBSCRIBE_RENAMED")
	admin := srv.Client(t)
	ctx := ctxT(t)
	prefix := uniqueName(t)
	for _, acl := range [][]any{
		{"ACL", "SETUSER", "nosub", "on", ">pw", "~*", "&*", "+@all", "-subscribe"},
		{"ACL", "SETUSER", "nopub", "on", ">pw", "~*", "&*", "+@all", "-publish"},
		{"ACL", "SETUSER", "nochan", "on", ">pw", "~*", "resetchannels", "+@all"},
	} {
		if err := admin.Do(ctx, acl...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	user := func(name, pw string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: name, Password: pw, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	tests := []struct {
		name   string
		client *redis.Client
		opts   []Option
		want   []string
	}{
		{"wrong password", user("nosub", "wrong"), nil, []string{"WRONGPASS", "password"}},
		{"no subscribe", user("nosub", "pw"), nil, []string{"NOPERM", "SUBSCRIBE", "+subscribe", "&" + prefix + ":*"}},
		{"no publish", user("nopub", "pw"), nil, []string{"NOPERM", "PUBLISH", "+publish"}},
		{"no channel", user("nochan", "pw"), nil, []string{"NOPERM", "channel pattern &" + prefix + ":*"}},
		{"no ssubscribe", srv.Client(t), []Option{WithShardedPubSub(true)}, []string{"SSUBSCRIBE", "WithShardedPubSub(false)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			b, err := New(tt.client, append([]Option{WithChannelPrefix(prefix)}, tt.opts...)...)
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrRedisRefused) {
				t.Errorf("error %v does not wrap ErrRedisRefused", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("New took %v to fail", d)
			}
		})
	}
}

// TestLocalDelivery (issue 10 item 5): two registrations of one namespace on
// one bus invalidate each other; the publishing registration is spared its
// own keys.
func TestLocalDelivery(t *testing.T) {
	ctx := ctxT(t)
	b := newBus(t, standaloneClient(t), WithChannelPrefix(uniqueName(t)))
	first, second, other := newRecorder(), newRecorder(), newRecorder()
	sub, err := b.Subscribe("users", first.invalidate, first.flush)
	if err != nil {
		t.Fatal(err)
	}
	second.subscribe(t, b, "users")
	other.subscribe(t, b, "orders")
	if err := sub.Publish(ctx, []string{"k"}); err != nil {
		t.Fatal(err)
	}
	if !second.has("k") {
		t.Error("the second cache of the namespace did not get the key")
	}
	if first.count() != 0 || other.count() != 0 {
		t.Errorf("publisher got %d keys, other namespace %d; want 0, 0", first.count(), other.count())
	}
	mustPublish(t, ctx, b, "users", "j") // not bound to a registration: both
	if !first.has("j") || !second.has("j") {
		t.Error("Publish did not reach both local caches")
	}
}

// TestServicesSharingRedis (issue 10 item 9): a bus of another service on
// the same Redis (same channel prefix, other namespaces) that dies flushes
// nothing of ours; with its own prefix it is not even heard.
func TestServicesSharingRedis(t *testing.T) {
	ctx := ctxT(t)
	prefix := uniqueName(t)
	opts := []Option{WithChannelPrefix(prefix), WithHeartbeatInterval(50 * time.Millisecond), WithLagLimit(time.Second)}
	a := newBus(t, standaloneClient(t), opts...)
	d := &dropper{out: true}
	serviceB := newBus(t, standaloneClient(t), append(opts, withDrop(d.drop))...)
	otherPrefix := newBus(t, standaloneClient(t), WithChannelPrefix(prefix+"-other"), WithHeartbeatInterval(50*time.Millisecond))
	mine := newRecorder()
	mine.subscribe(t, a, "users")
	theirs := newRecorder()
	theirs.subscribe(t, serviceB, "billing")
	mustPublish(t, ctx, serviceB, "billing", "x")
	mustPublish(t, ctx, otherPrefix, "users", "y")
	eventually(t, 5*time.Second, "A to hear service B's announcement", func() bool { return a.Stats().AnnouncementsReceived > 0 })
	if mine.has("y") {
		t.Error("a bus with another prefix reached A")
	}
	d.n.Store(1 << 62) // service B falls silent
	eventually(t, 5*time.Second, "A to count B as silent", func() bool { return a.Stats().Flushes.Silence > 0 })
	if n := mine.flushCount(); n != 0 {
		t.Errorf("A's users cache was flushed %d times for service B's silence", n)
	}
}
