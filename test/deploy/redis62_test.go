package deploy_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
)

// withoutShardedPubSub are the redis-server arguments that take sharded
// pub/sub away from a Redis 7.0 server, as on Redis 6.2: the commands are
// then unknown.
var withoutShardedPubSub = []string{
	"--rename-command", "SSUBSCRIBE", "",
	"--rename-command", "SPUBLISH", "",
	"--rename-command", "SUNSUBSCRIBE", "",
}

// TestClusterWithoutShardedPubSub simulates a Redis 6.2 Cluster on Redis
// 7.0 (the machine has no 6.2): a private Cluster whose servers do not know
// SSUBSCRIBE and SPUBLISH. A bus left on the default transport warns once
// and falls back to classic pub/sub; caches and invalidations work. A bus
// told to use sharded pub/sub fails New, naming the option that fixes it.
func TestClusterWithoutShardedPubSub(t *testing.T) {
	t.Parallel()
	pc := redistest.NewCluster(t, 2, 0, withoutShardedPubSub...)
	log := &logBuffer{}
	setup := newSetup(t, invalidation.WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	a := setup.node(t, pc.Client(t, nil))
	b := setup.node(t, pc.Client(t, nil))
	const warning = "the server does not know SSUBSCRIBE"
	if n := strings.Count(log.String(), warning); n != 2 {
		t.Fatalf("%d warnings %q from two buses, want 2; log:\n%s", n, warning, log)
	}
	for _, n := range []*node{a, b} {
		if n.g.Bus().Status().Sharded {
			t.Fatal("the bus still uses sharded pub/sub")
		}
	}
	exercise(t, a, b)

	_, err := invalidation.New(pc.Client(t, nil), invalidation.WithShardedPubSub(true), invalidation.WithChannelPrefix("deploy-"+setup.name))
	if !errors.Is(err, invalidation.ErrRedisRefused) || !strings.Contains(err.Error(), "WithShardedPubSub(false)") {
		t.Fatalf("invalidation.New(WithShardedPubSub(true)) on a Cluster without SSUBSCRIBE: %v; want ErrRedisRefused naming WithShardedPubSub(false)", err)
	}
}

// logBuffer is an io.Writer for a logger, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
