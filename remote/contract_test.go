package remote_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered/driver"
	"github.com/tiercache/tiercache/tiered/drivertest"
)

// TestContract runs the public L2 contract suite against the Store on the
// standalone server and on the Cluster, and with the Lua fallback of
// Acquire meant for Redis older than 7.0.
func TestContract(t *testing.T) {
	const limit = 4096
	run := func(t *testing.T, rdb remote.Client, opts ...func(*remote.Store)) {
		drivertest.RunRemote(t, drivertest.RemoteSuite{
			New: func(t *testing.T) driver.Remote {
				s := newStore(t, rdb, remote.WithMaxValueBytes(limit))
				for _, o := range opts {
					o(s)
				}
				return s
			},
			Prefix:     redistest.Name(t) + ":",
			Unstorable: make([]byte, limit),
			Corrupt: func(t *testing.T, key string) {
				if err := rdb.(redis.Cmdable).Set(context.Background(), key, "not an envelope", time.Minute).Err(); err != nil {
					t.Fatalf("writing a corrupt value: %v", err)
				}
			},
		})
	}
	deployments(t, func(t *testing.T, rdb remote.Client) { run(t, rdb) })
	t.Run("standalone-acquire-script", func(t *testing.T) {
		run(t, redistest.Standalone(t), remote.ForceAcquireScript)
	})
}
