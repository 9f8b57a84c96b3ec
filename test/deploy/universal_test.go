package deploy_test

import (
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// A redis.UniversalClient is a tiercache.Client (so a remote.Client and an
// invalidation.Client): it is passed as it is, no type assertion needed.
var _ tiercache.Client = redis.UniversalClient(nil)

// TestUniversalClient: redis.NewUniversalClient builds a *redis.Client from
// one address, a *redis.ClusterClient from several and a failover
// *redis.Client from a MasterName; passed as a redis.UniversalClient, each
// runs the caches and the bus like the client it built (sharded pub/sub on
// the Cluster only).
func TestUniversalClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		opts        func(t *testing.T) *redis.UniversalOptions
		wantType    string
		wantSharded bool
	}{
		{"one address", func(t *testing.T) *redis.UniversalOptions {
			return &redis.UniversalOptions{Addrs: []string{redistest.StandaloneAddr(t)}}
		}, "*redis.Client", false},
		{"cluster addresses", func(t *testing.T) *redis.UniversalOptions {
			return &redis.UniversalOptions{Addrs: redistest.ClusterAddrs(t)}
		}, "*redis.ClusterClient", true},
		{"master name", func(t *testing.T) *redis.UniversalOptions {
			s := redistest.NewSentinel(t)
			return &redis.UniversalOptions{MasterName: s.MasterName, Addrs: s.Addrs()}
		}, "*redis.Client", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts(t)
			setup := newSetup(t)
			var nodes []*node
			for range 2 {
				var c redis.UniversalClient = redis.NewUniversalClient(opts)
				t.Cleanup(func() { _ = c.Close() })
				if got := fmt.Sprintf("%T", c); got != tt.wantType {
					t.Fatalf("NewUniversalClient made a %s, want %s", got, tt.wantType)
				}
				nodes = append(nodes, setup.node(t, c))
			}
			if got := nodes[0].g.Bus().Status().Sharded; got != tt.wantSharded {
				t.Fatalf("the bus uses sharded pub/sub: %v, want %v", got, tt.wantSharded)
			}
			exercise(t, nodes[0], nodes[1])
		})
	}
}
