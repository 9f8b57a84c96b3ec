package invalidation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestNewRejects(t *testing.T) {
	// The client is never contacted: New fails before starting anything.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = c.Close() })
	tests := []struct {
		name   string
		client Client
		opts   []Option
		want   error
	}{
		{"nil client", nil, nil, ErrNilClient},
		{"nil *redis.Client", (*redis.Client)(nil), nil, ErrNilClient},
		{"nil *redis.ClusterClient", (*redis.ClusterClient)(nil), nil, ErrNilClient},
		{"nil option", c, []Option{nil}, ErrInvalidOption},
		{"empty prefix", c, []Option{WithChannelPrefix("")}, ErrInvalidOption},
		{"prefix with brace", c, []Option{WithChannelPrefix("a{b")}, ErrInvalidOption},
		{"long prefix", c, []Option{WithChannelPrefix(strings.Repeat("p", 129))}, ErrInvalidOption},
		{"zero shards", c, []Option{WithShards(0)}, ErrInvalidOption},
		{"too many shards", c, []Option{WithShards(MaxShards + 1)}, ErrInvalidOption},
		{"zero heartbeat", c, []Option{WithHeartbeatInterval(0)}, ErrInvalidOption},
		{"sub-millisecond heartbeat", c, []Option{WithHeartbeatInterval(time.Microsecond)}, ErrInvalidOption},
		{"one silence interval", c, []Option{WithSilenceIntervals(1)}, ErrInvalidOption},
		{"zero publish timeout", c, []Option{WithPublishTimeout(0)}, ErrInvalidOption},
		{"negative start timeout", c, []Option{WithStartTimeout(-time.Second)}, ErrInvalidOption},
		{"zero queue", c, []Option{WithQueueSize(0)}, ErrInvalidOption},
		{"nil meter provider", c, []Option{WithMeterProvider(nil)}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.client, tt.opts...)
			if !errors.Is(err, tt.want) {
				t.Errorf("New error = %v, want %v", err, tt.want)
			}
			if b != nil {
				t.Errorf("New returned a bus with an error")
				_ = b.Close()
			}
			if err != nil && !strings.HasPrefix(err.Error(), "invalidation: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	b := newBus(t, standaloneClient(t), WithChannelPrefix(uniqueName(t)))
	if got, want := len(b.Channels()), DefaultClassicShards; got != want {
		t.Errorf("standalone channels = %d, want %d", got, want)
	}
	if b.sharded {
		t.Errorf("standalone bus uses sharded pub/sub by default")
	}
	if b.cfg.heartbeat != time.Second || b.cfg.silence != 3 || b.cfg.publishTimeout != DefaultPublishTimeout {
		t.Errorf("defaults: %+v", b.cfg)
	}
	cb := newBus(t, clusterClient(t), WithChannelPrefix(uniqueName(t)))
	if got, want := len(cb.Channels()), DefaultShardedShards; got != want {
		t.Errorf("cluster channels = %d, want %d", got, want)
	}
	if !cb.sharded || cb.reload == nil {
		t.Errorf("cluster bus: sharded %v, reload set %v; want both", cb.sharded, cb.reload != nil)
	}
}
