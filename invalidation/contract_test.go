package invalidation

import (
	"slices"
	"testing"

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
			nodes := func(t *testing.T, n int, first ...Option) []driver.Bus {
				opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(t)))
				buses := make([]driver.Bus, n)
				for i := range buses {
					o := opts
					if i == 0 {
						o = append(slices.Clone(opts), first...)
					}
					buses[i] = newBus(t, tr.client(t), o...)
				}
				return buses
			}
			drivertest.RunBus(t, drivertest.BusSuite{
				Nodes: func(t *testing.T, n int) []driver.Bus { return nodes(t, n) },
				Lossy: func(t *testing.T) ([]driver.Bus, func()) {
					d := &dropper{out: true, kind: kindKeys}
					return nodes(t, 2, withDrop(d.drop)), func() { d.n.Store(1) }
				},
			})
		})
	}
}
