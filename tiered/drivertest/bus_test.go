package drivertest_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/tiercache/tiercache/tiered/driver"
	"github.com/tiercache/tiercache/tiered/drivertest"
)

// hub is an in-memory network of buses: the smallest bus that keeps the
// contract, to show that RunBus passes it (the real one is package
// invalidation's, run against Redis in its tests).
type hub struct {
	mu    sync.Mutex
	nodes []*memBus
}

type memBus struct {
	hub    *hub
	mu     sync.RWMutex // held for reading while callbacks run
	regs   []*memReg
	closed bool
	lose   bool // lose the next message to other nodes
}

type memReg struct {
	bus        *memBus
	namespace  string
	invalidate func([]string)
	flush      func()
}

var errClosed = errors.New("memBus: closed")

func (h *hub) node() *memBus {
	b := &memBus{hub: h}
	h.mu.Lock()
	h.nodes = append(h.nodes, b)
	h.mu.Unlock()
	return b
}

func (b *memBus) Subscribe(ns string, invalidate func([]string), flush func()) (driver.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	r := &memReg{b, ns, invalidate, flush}
	b.regs = append(b.regs, r)
	return r, nil
}

func (b *memBus) Publish(ctx context.Context, ns string, keys []string) error {
	return b.publish(ns, keys, nil)
}

func (b *memBus) publish(ns string, keys []string, except *memReg) error {
	if len(keys) == 0 {
		return nil
	}
	b.mu.Lock()
	closed, lose := b.closed, b.lose
	b.lose = false
	b.mu.Unlock()
	if closed {
		return errClosed
	}
	b.hub.mu.Lock()
	nodes := slices.Clone(b.hub.nodes)
	b.hub.mu.Unlock()
	for _, n := range nodes {
		n.deliver(ns, keys, except, n != b && lose)
	}
	return nil
}

// deliver runs the callbacks of ns on b, but except's; lost turns the
// invalidation into a flush, as a bus that detects the loss does.
func (b *memBus) deliver(ns string, keys []string, except *memReg, lost bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return
	}
	for _, r := range b.regs {
		switch {
		case r == except || r.namespace != ns:
		case lost:
			r.flush()
		default:
			r.invalidate(keys)
		}
	}
}

func (b *memBus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (r *memReg) Publish(ctx context.Context, keys []string) error {
	return r.bus.publish(r.namespace, keys, r)
}

func (r *memReg) Unsubscribe() {
	b := r.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	b.regs = slices.DeleteFunc(b.regs, func(x *memReg) bool { return x == r })
}

func TestRunBus(t *testing.T) {
	nodes := func(t *testing.T, n int) []driver.Bus {
		h := &hub{}
		out := make([]driver.Bus, n)
		for i := range out {
			out[i] = h.node()
		}
		return out
	}
	drivertest.RunBus(t, drivertest.BusSuite{
		Nodes: nodes,
		Lossy: func(t *testing.T) ([]driver.Bus, func()) {
			ns := nodes(t, 2)
			a := ns[0].(*memBus)
			return ns, func() { a.mu.Lock(); a.lose = true; a.mu.Unlock() }
		},
	})
}
