package invalidation

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tiered/driver"
	"github.com/tiercache/tiercache/tiered/drivertest"
)

// TestContract runs the public bus contract suite against the Bus on every
// transport: each node is a Bus on a client of its own, the nodes of a
// subtest share a channel prefix no other test uses.
func TestContract(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			clients := make(map[driver.Bus]Client)
			nodes := func(t *testing.T, n int, first ...Option) []driver.Bus {
				opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(t)))
				buses := make([]driver.Bus, n)
				for i := range buses {
					o := opts
					if i == 0 {
						o = append(slices.Clone(opts), first...)
					}
					c := tr.client(t)
					buses[i] = newBus(t, c, o...)
					mu.Lock()
					clients[buses[i]] = c
					mu.Unlock()
				}
				return buses
			}
			drivertest.RunBus(t, drivertest.BusSuite{
				Nodes: func(t *testing.T, n int) []driver.Bus { return nodes(t, n) },
				Lossy: func(t *testing.T) ([]driver.Bus, func()) {
					d := &dropper{out: true, kind: kindKeys}
					return nodes(t, 2, withDrop(d.drop)), func() { d.n.Store(1) }
				},
				// What remote.Store.SetAndPublish does after its write:
				// the message on the client the bus was created with.
				Carrier: func(t *testing.T, node driver.Bus) (driver.Carrier, driver.SendFunc) {
					mu.Lock()
					c := clients[node]
					mu.Unlock()
					return driver.NewCarrier(c), func(ctx context.Context, command, channel string, payload []byte) error {
						if payload == nil {
							return nil
						}
						cmd := redis.NewIntCmd(ctx, command, channel, payload)
						cmd.SetFirstKeyPos(1)
						_ = c.Process(ctx, cmd)
						return cmd.Err()
					}
				},
			})
		})
	}
}
