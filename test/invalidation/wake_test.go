package invalidation_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/internal/bushook"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

var _ driver.LeaseWaker = (*invalidation.Bus)(nil)

// Lease notice kinds, as the bus hook sees them.
const (
	kindLeaseWait   = 5
	kindLeaseFilled = 6
)

// notices records the lease notices one bus sends and receives, and drops
// those drop says.
type notices struct {
	mu   sync.Mutex
	seen []seenNotice
	drop func(outgoing bool, kind uint8) bool
	ch   chan struct{}
}

type seenNotice struct {
	outgoing bool
	dropped  bool
	kind     uint8
	origin   uint64
	ns       string
	keys     []string
}

func newNotices() *notices { return &notices{ch: make(chan struct{}, 1)} }

func (l *notices) option() invalidation.Option {
	return bushook.Option(bushook.Hooks{Drop: func(outgoing bool, m bushook.Msg) bool {
		if m.Kind != kindLeaseWait && m.Kind != kindLeaseFilled {
			return false
		}
		l.mu.Lock()
		drop := l.drop != nil && l.drop(outgoing, m.Kind)
		l.seen = append(l.seen, seenNotice{outgoing, drop, m.Kind, m.Origin, m.Namespace, slices.Clone(m.Keys)})
		l.mu.Unlock()
		select {
		case l.ch <- struct{}{}:
		default:
		}
		return drop
	}}).(invalidation.Option)
}

// await waits for a notice matching want and returns every notice seen up
// to and including it.
func (l *notices) await(t *testing.T, what string, want func(seenNotice) bool) []seenNotice {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		l.mu.Lock()
		for i, n := range l.seen {
			if want(n) {
				got := slices.Clone(l.seen[:i+1])
				l.mu.Unlock()
				return got
			}
		}
		l.mu.Unlock()
		select {
		case <-l.ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (l *notices) count(want func(seenNotice) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.seen {
		if want(s) {
			n++
		}
	}
	return n
}

// heard matches a notice of kind received from origin.
func heard(kind uint8, origin uint64) func(seenNotice) bool {
	return func(n seenNotice) bool { return !n.outgoing && n.kind == kind && n.origin == origin }
}

// wakeNodes starts n nodes sharing cache name, each with its own client,
// bus (with a notice log) and L1; waiters poll L2 every poll.
func wakeNodes(t *testing.T, topo topology, n int, name string, poll time.Duration) ([]*node, []*notices) {
	t.Helper()
	prefix := "inv-wake:" + name
	nodes := make([]*node, n)
	logs := make([]*notices, n)
	for i := range nodes {
		c := topo.client(t)
		logs[i] = newNotices()
		bus, err := invalidation.New(c, invalidation.WithChannelPrefix(prefix), logs[i].option())
		if err != nil {
			t.Fatalf("invalidation.New: %v", err)
		}
		t.Cleanup(func() { _ = bus.Close() })
		l2, err := remote.New(c)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = cacheOnBus(t, name, bus, l2, poll)
		nodes[i].name = string(rune('A' + i))
	}
	return nodes, logs
}

// cacheOnBus starts a cache called name on bus and l2, with its own L1.
func cacheOnBus(t *testing.T, name string, bus *invalidation.Bus, l2 driver.Remote, poll time.Duration) *node {
	t.Helper()
	store, err := local.New[string](local.WithMaxEntries(10_000))
	if err != nil {
		t.Fatal(err)
	}
	l1 := &guardedL1{Store: store}
	cache, err := tiered.New[string](name, l1, l2, tiered.WithInvalidation(bus),
		tiered.WithRemoteTimeout(2*time.Second), tiered.WithLeasePoll(poll, poll))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	return &node{bus: bus, l1: l1, l2: l2, cache: cache}
}

// gate is a loader that blocks until released and counts its calls.
type gate struct {
	mu      sync.Mutex
	calls   int
	started chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan struct{}, 16), release: make(chan struct{})} }

func (g *gate) load(ctx context.Context, key string) (string, error) {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	g.started <- struct{}{}
	select {
	case <-g.release:
		return "v-" + key, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// call is a GetOrLoad running in the background.
type call struct {
	start time.Time
	done  chan struct{}
	end   time.Time
	v     string
	err   error
}

func getOrLoad(ctx context.Context, n *node, key string, g *gate) *call {
	c := &call{start: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.v, c.err = n.cache.GetOrLoad(ctx, key, g.load)
		c.end = time.Now()
	}()
	return c
}

func (c *call) wait(t *testing.T, who, want string) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: GetOrLoad did not return", who)
	}
	if c.err != nil || c.v != want {
		t.Fatalf("%s: GetOrLoad = %q, %v; want %q", who, c.v, c.err, want)
	}
}

// wakePoll is the lease poll of the tests that must be woken: far longer
// than a wake takes, so a waiter that returns before it was woken.
const wakePoll = 2 * time.Second

// TestLeaseWaitersWokenAcrossNodes: B and C wait on A's lease with polling
// effectively off (first poll after 2 s). A's fill wakes them through the
// bus: they return within milliseconds of it, the loader runs once.
func TestLeaseWaitersWokenAcrossNodes(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			nodes, logs := wakeNodes(t, topo, 3, redistest.Name(t), wakePoll)
			a, b, c := nodes[0], nodes[1], nodes[2]
			ctx := ctxT(t)
			g := newGate()
			holder := getOrLoad(ctx, a, "k", g)
			<-g.started
			wb, wc := getOrLoad(ctx, b, "k", g), getOrLoad(ctx, c, "k", g)
			logs[0].await(t, "A to hear B wait", heard(kindLeaseWait, b.bus.Origin()))
			logs[0].await(t, "A to hear C wait", heard(kindLeaseWait, c.bus.Origin()))
			released := time.Now()
			close(g.release)
			holder.wait(t, "A", "v-k")
			for _, w := range []struct {
				name string
				c    *call
			}{{"B", wb}, {"C", wc}} {
				w.c.wait(t, w.name, "v-k")
				if took := w.c.end.Sub(w.c.start); took >= wakePoll {
					t.Errorf("%s returned %v after its call: by its poll (%v), not woken", w.name, took, wakePoll)
				}
				t.Logf("%s returned %v after the loader was released", w.name, w.c.end.Sub(released))
			}
			if n := g.count(); n != 1 {
				t.Errorf("loader calls = %d, want 1", n)
			}
			// One filled notice to each waiting node (one message when their
			// buses share a hint, 1 in 65536).
			want := 2
			if b.bus.Origin()>>48 == c.bus.Origin()>>48 {
				want = 1
			}
			if n := logs[0].count(func(n seenNotice) bool { return n.outgoing && n.kind == kindLeaseFilled }); n != want {
				t.Errorf("A sent %d filled notices, want %d", n, want)
			}
		})
	}
}

// TestLeaseWaiterLostNotice: A's filled notice is lost; B, still polling
// (every 50 ms here), ends with the value all the same.
func TestLeaseWaiterLostNotice(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			nodes, logs := wakeNodes(t, topo, 2, redistest.Name(t), 50*time.Millisecond)
			a, b := nodes[0], nodes[1]
			logs[0].drop = func(outgoing bool, kind uint8) bool { return outgoing && kind == kindLeaseFilled }
			ctx := ctxT(t)
			g := newGate()
			holder := getOrLoad(ctx, a, "k", g)
			<-g.started
			wb := getOrLoad(ctx, b, "k", g)
			logs[0].await(t, "A to hear B wait", heard(kindLeaseWait, b.bus.Origin()))
			close(g.release)
			holder.wait(t, "A", "v-k")
			wb.wait(t, "B", "v-k")
			if n := g.count(); n != 1 {
				t.Errorf("loader calls = %d, want 1", n)
			}
			if n := logs[0].count(func(n seenNotice) bool { return n.dropped }); n != 1 {
				t.Errorf("A dropped %d filled notices, want 1", n)
			}
			if n := logs[1].count(heard(kindLeaseFilled, a.bus.Origin())); n != 0 {
				t.Errorf("B heard %d filled notices, want 0 (they were dropped)", n)
			}
		})
	}
}

// TestLeaseWaiterBusClosed: B's bus closes while B waits; B ends by
// polling once A's value lands.
func TestLeaseWaiterBusClosed(t *testing.T) {
	nodes, logs := wakeNodes(t, topologies()[0], 2, redistest.Name(t), 50*time.Millisecond)
	a, b := nodes[0], nodes[1]
	ctx := ctxT(t)
	g := newGate()
	holder := getOrLoad(ctx, a, "k", g)
	<-g.started
	wb := getOrLoad(ctx, b, "k", g)
	logs[0].await(t, "A to hear B wait", heard(kindLeaseWait, b.bus.Origin()))
	_ = b.bus.Close()
	close(g.release)
	holder.wait(t, "A", "v-k")
	wb.wait(t, "B", "v-k")
	if n := g.count(); n != 1 {
		t.Errorf("loader calls = %d, want 1", n)
	}
}

// TestLeaseWaiterInProcess: a second cache of the same name on the holder's
// bus waits on the holder's lease: it is woken in-process, and the bus sends
// no notice at all.
func TestLeaseWaiterInProcess(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			name := redistest.Name(t)
			nodes, logs := wakeNodes(t, topo, 1, name, wakePoll)
			a := nodes[0]
			a2 := cacheOnBus(t, name, a.bus, a.l2, wakePoll)
			ctx := ctxT(t)
			g := newGate()
			holder := getOrLoad(ctx, a, "k", g)
			<-g.started
			w := getOrLoad(ctx, a2, "k", g)
			// Once it counts a wait, it has registered or is about to; a
			// registration just after the resolution is woken at once too.
			eventually(t, 20*time.Second, "A2 to wait on the lease", func() bool { return a2.cache.Stats().LeaseWaits == 1 })
			close(g.release)
			holder.wait(t, "A", "v-k")
			w.wait(t, "A2", "v-k")
			if took := w.end.Sub(w.start); took >= wakePoll {
				t.Errorf("A2 returned %v after its call: by its poll, not woken", took)
			}
			// Notices go out in order: once a later one went, any notice for
			// k would have too.
			_, done := a.bus.AwaitLease("sentinel", "x", a.bus.LeaseToken())
			defer done()
			got := logs[0].await(t, "the sentinel notice", func(n seenNotice) bool { return n.outgoing && n.ns == "sentinel" })
			if len(got) != 1 {
				t.Errorf("the bus sent %+v before the sentinel, want nothing", got[:len(got)-1])
			}
			if n := g.count(); n != 1 {
				t.Errorf("loader calls = %d, want 1", n)
			}
		})
	}
}

// TestLeaseWaiterCancelled: a waiter's caller gives up on its own ctx; the
// holder's fill still lands and the waiter's node reads it.
func TestLeaseWaiterCancelled(t *testing.T) {
	nodes, logs := wakeNodes(t, topologies()[1], 2, redistest.Name(t), wakePoll)
	a, b := nodes[0], nodes[1]
	ctx := ctxT(t)
	g := newGate()
	holder := getOrLoad(ctx, a, "k", g)
	<-g.started
	cctx, cancel := context.WithCancel(ctx)
	wb := getOrLoad(cctx, b, "k", g)
	logs[0].await(t, "A to hear B wait", heard(kindLeaseWait, b.bus.Origin()))
	cancel()
	<-wb.done
	if !errors.Is(wb.err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v, want context.Canceled", wb.err)
	}
	close(g.release)
	holder.wait(t, "A", "v-k")
	getOrLoad(ctx, b, "k", g).wait(t, "B again", "v-k")
	if n := g.count(); n != 1 {
		t.Errorf("loader calls = %d, want 1", n)
	}
}

// TestBatchLeaseWaitersWoken: A holds the leases of a GetOrLoadMany batch;
// B waits on one of them with polling effectively off. The batch's fill
// wakes B through the bus; the loader runs once per key.
func TestBatchLeaseWaitersWoken(t *testing.T) {
	for _, topo := range topologies() {
		t.Run(topo.name, func(t *testing.T) {
			nodes, logs := wakeNodes(t, topo, 2, redistest.Name(t), wakePoll)
			a, b := nodes[0], nodes[1]
			ctx := ctxT(t)
			var mu sync.Mutex
			calls := 0
			started, release := make(chan struct{}), make(chan struct{})
			batch := func(ctx context.Context, keys []string) (map[string]string, error) {
				mu.Lock()
				calls++
				mu.Unlock()
				close(started)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				m := make(map[string]string, len(keys))
				for _, k := range keys {
					m[k] = "v-" + k
				}
				return m, nil
			}
			done := make(chan error, 1)
			go func() {
				m, err := a.cache.GetOrLoadMany(ctx, []string{"k1", "k2"}, batch)
				if err == nil && (m["k1"] != "v-k1" || m["k2"] != "v-k2") {
					err = errors.New("A's batch returned the wrong values")
				}
				done <- err
			}()
			<-started
			g := newGate() // B must not load: a call would block on the gate
			w := getOrLoad(ctx, b, "k2", g)
			logs[0].await(t, "A to hear B wait", heard(kindLeaseWait, b.bus.Origin()))
			released := time.Now()
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("A: GetOrLoadMany: %v", err)
			}
			w.wait(t, "B", "v-k2")
			if took := w.end.Sub(w.start); took >= wakePoll {
				t.Errorf("B returned %v after its call: by its poll (%v), not woken", took, wakePoll)
			}
			logs[1].await(t, "B to hear A's filled notice", heard(kindLeaseFilled, a.bus.Origin()))
			t.Logf("B returned %v after the batch loader was released", w.end.Sub(released))
			if calls != 1 || g.count() != 0 {
				t.Errorf("batch loader calls = %d, B's loader calls = %d; want 1 and 0", calls, g.count())
			}
		})
	}
}
