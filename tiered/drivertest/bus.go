package drivertest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// BusSuite describes a driver.Bus under test.
type BusSuite struct {
	// Nodes returns n fresh nodes of the bus under test, each as a node
	// in its own process would be (its own Bus), connected so that each
	// hears what the others publish, and ready: a message one publishes
	// after Nodes returned reaches the others. The suite calls it once
	// per subtest; the nodes must not hear those of other subtests. The
	// function ends them when the test ends (t.Cleanup).
	Nodes func(t *testing.T, n int) []driver.Bus
	// Lossy, when not nil, returns two nodes as Nodes does and lose: after
	// lose is called, the next message of keys from nodes[0] is lost on
	// its way to nodes[1] (the implementation's own fault hook). Nil skips
	// the check that a lost message is made up by a flush.
	Lossy func(t *testing.T) (nodes []driver.Bus, lose func())
	// Carrier, when not nil, returns for a node whose Subscriptions are
	// driver.CarryingSubscriptions the Carrier of a store on the node's
	// connection pool and a SendFunc that sends a message on it as the
	// store's SetAndPublish does after its write. Nil skips the check that
	// a carried message is delivered (a foreign Carrier is always
	// checked to be declined).
	Carrier func(t *testing.T, node driver.Bus) (via driver.Carrier, send driver.SendFunc)
}

// RunBus runs the contract checks of a driver.Bus as subtests of t, each
// named after the rule it checks: delivery to the other nodes and to the
// other registrations of the node, the registration's own Publish skipping
// itself, namespaces kept apart, Unsubscribe stopping the callbacks, a lost
// message made up by a flush (with suite.Lossy), the Close rules when the
// bus has a Close() error method, and driver.LeaseWaker when the bus
// implements it.
func RunBus(t *testing.T, suite BusSuite) {
	t.Helper()
	if suite.Nodes == nil {
		t.Fatal("drivertest: BusSuite.Nodes is nil")
	}
	b := &busRun{s: suite}
	for _, c := range []struct {
		name string
		f    func(t *testing.T)
	}{
		{"PublishReachesEveryOtherNode", b.reachesOthers},
		{"PublishHasReachedThisNodesRegistrationsWhenItReturns", b.reachesLocal},
		{"SubscriptionPublishSkipsItsOwnRegistration", b.skipsSelf},
		{"RegistrationsOfOtherNamespacesGetNothing", b.namespaces},
		{"PublishOfNoKeyDoesNothing", b.noKeys},
		{"UnsubscribeStopsTheCallbacksBeforeItReturns", b.unsubscribe},
		{"LostMessageIsMadeUpByAFlush", b.lost},
		{"CloseStopsTheCallbacksAndRefusesLaterCalls", b.close},
		{"CarryingSubscription/CarryThroughAForeignCarrierDeclinesAndSendsNothing", b.carryForeign},
		{"CarryingSubscription/CarriedMessageIsDeliveredAsPublish", b.carry},
		{"LeaseWaker/LeaseTokenIsNonZeroAndFresh", b.tokens},
		{"LeaseWaker/LeaseResolvedWakesTheWaitersOfThisNode", b.wakeLocal},
		{"LeaseWaker/LeaseResolvedWakesTheWaitersOfOtherNodes", b.wakeRemote},
	} {
		t.Run(c.name, c.f)
	}
}

type busRun struct {
	s  BusSuite
	ns atomic.Uint64
}

// namespace returns a namespace unique to this run of the suite.
func (b *busRun) namespace() string { return fmt.Sprint("drivertest-ns-", b.ns.Add(1)) }

func (b *busRun) nodes(t *testing.T, n int) []driver.Bus {
	t.Helper()
	nodes := b.s.Nodes(t, n)
	if len(nodes) != n {
		t.Fatalf("BusSuite.Nodes(%d) returned %d nodes", n, len(nodes))
	}
	return nodes
}

// recorder is a cache's registration: it records the keys and flushes it
// is given, and how many of its callbacks are running.
type recorder struct {
	mu       sync.Mutex
	keys     map[string]int
	calls    int
	flushes  int
	inFlight atomic.Int32
	hold     atomic.Pointer[hold] // the next invalidate waits on it
}

// hold makes one callback wait: it closes entered, waits for release, then
// calls check on its way out.
type hold struct {
	entered, release chan struct{}
	check            func()
}

func newRecorder() *recorder { return &recorder{keys: make(map[string]int)} }

func (r *recorder) invalidate(keys []string) {
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	if h := r.hold.Swap(nil); h != nil {
		close(h.entered)
		<-h.release
		defer h.check()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.keys[k]++
	}
	r.calls++
}

func (r *recorder) flush() {
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
	r.calls++
}

func (r *recorder) has(keys ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if r.keys[k] == 0 {
			return false
		}
	}
	return true
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key]
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

func (r *recorder) flushCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushes
}

func (r *recorder) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func subscribe(t *testing.T, bus driver.Bus, ns string, r *recorder) driver.Subscription {
	t.Helper()
	sub, err := bus.Subscribe(ns, r.invalidate, r.flush)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", ns, err)
	}
	t.Cleanup(sub.Unsubscribe)
	return sub
}

func keyList(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprint(prefix, i)
	}
	return ks
}

func publish(t *testing.T, bus driver.Bus, ns string, keys ...string) {
	t.Helper()
	if err := bus.Publish(ctxOf(t), ns, keys); err != nil {
		t.Fatalf("Publish(%q, %d keys): %v", ns, len(keys), err)
	}
}

func (b *busRun) reachesOthers(t *testing.T) {
	nodes := b.nodes(t, 3)
	ns := b.namespace()
	rb, rc := newRecorder(), newRecorder()
	subscribe(t, nodes[1], ns, rb)
	subscribe(t, nodes[2], ns, rc)
	keys := keyList("k", 200)
	publish(t, nodes[0], ns, keys...)
	eventually(t, "the other nodes to get every key", func() bool { return rb.has(keys...) && rc.has(keys...) })
	// And back: the first node hears the others.
	ra := newRecorder()
	subscribe(t, nodes[0], ns, ra)
	publish(t, nodes[2], ns, "back")
	eventually(t, "the first node to get the key of the third", func() bool { return ra.has("back") && rb.has("back") })
}

func (b *busRun) reachesLocal(t *testing.T) {
	nodes := b.nodes(t, 1)
	ns := b.namespace()
	r1, r2 := newRecorder(), newRecorder()
	subscribe(t, nodes[0], ns, r1)
	subscribe(t, nodes[0], ns, r2)
	keys := keyList("k", 20)
	publish(t, nodes[0], ns, keys...)
	if !r1.has(keys...) || !r2.has(keys...) {
		t.Errorf("when Publish returned, the node's registrations of the namespace had %d and %d of the %d keys; want all", r1.distinct(), r2.distinct(), len(keys))
	}
}

func (b *busRun) skipsSelf(t *testing.T) {
	nodes := b.nodes(t, 2)
	ns := b.namespace()
	self, sibling, remote := newRecorder(), newRecorder(), newRecorder()
	sub := subscribe(t, nodes[0], ns, self)
	subscribe(t, nodes[0], ns, sibling)
	subscribe(t, nodes[1], ns, remote)
	if err := sub.Publish(ctxOf(t), []string{"mine"}); err != nil {
		t.Fatalf("Subscription.Publish: %v", err)
	}
	if !sibling.has("mine") {
		t.Error("when Subscription.Publish returned, the other registration of the node did not have the key")
	}
	eventually(t, "the other node to get the key", func() bool { return remote.has("mine") })
	// The node's own message may come back to it: give it the time a
	// message of the other node takes, then look.
	publish(t, nodes[1], ns, "marker")
	eventually(t, "the marker", func() bool { return self.has("marker") })
	if n := self.count("mine"); n != 0 {
		t.Errorf("the publishing registration was given its own key %d times, want 0", n)
	}
}

func (b *busRun) namespaces(t *testing.T) {
	nodes := b.nodes(t, 2)
	ns, other := b.namespace(), b.namespace()
	local, remoteOther, remote := newRecorder(), newRecorder(), newRecorder()
	subscribe(t, nodes[0], other, local)
	subscribe(t, nodes[1], other, remoteOther)
	subscribe(t, nodes[1], ns, remote)
	publish(t, nodes[0], ns, "k")
	eventually(t, "the key", func() bool { return remote.has("k") })
	publish(t, nodes[0], other, "marker")
	eventually(t, "the marker", func() bool { return remoteOther.has("marker") && local.has("marker") })
	if local.has("k") || remoteOther.has("k") {
		t.Errorf("registrations of namespace %q were given a key of %q", other, ns)
	}
}

func (b *busRun) noKeys(t *testing.T) {
	nodes := b.nodes(t, 2)
	ns := b.namespace()
	local, remote := newRecorder(), newRecorder()
	sub := subscribe(t, nodes[0], ns, local)
	subscribe(t, nodes[1], ns, remote)
	if err := nodes[0].Publish(ctxOf(t), ns, nil); err != nil {
		t.Errorf("Publish of no key = %v, want nil", err)
	}
	if err := sub.Publish(ctxOf(t), []string{}); err != nil {
		t.Errorf("Subscription.Publish of no key = %v, want nil", err)
	}
	publish(t, nodes[0], ns, "marker")
	eventually(t, "the marker", func() bool { return remote.has("marker") })
	remote.mu.Lock()
	defer remote.mu.Unlock()
	if remote.calls-remote.flushes != 1 {
		t.Errorf("the other node's registration got %d invalidations, want 1 (the marker's)", remote.calls-remote.flushes)
	}
}

func (b *busRun) unsubscribe(t *testing.T) {
	nodes := b.nodes(t, 2)
	ns := b.namespace()
	gone, stays := newRecorder(), newRecorder()
	sub := subscribe(t, nodes[0], ns, gone)
	subscribe(t, nodes[0], ns, stays)
	publish(t, nodes[1], ns, "before")
	eventually(t, "the key before Unsubscribe", func() bool { return gone.has("before") })
	// Publishers on both nodes keep the callbacks busy while Unsubscribe
	// runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := n.Publish(context.Background(), ns, []string{fmt.Sprint("during", i)}); err != nil {
					t.Errorf("Publish during Unsubscribe: %v", err)
					return
				}
			}
		})
	}
	eventually(t, "the publishers to reach the registration", func() bool { return gone.has("during1") })
	// Hold one callback of the registration while Unsubscribe runs: it
	// must not return before that callback has.
	entered, release := make(chan struct{}), make(chan struct{})
	var returnedEarly atomic.Bool
	var unsubscribed atomic.Bool
	gone.hold.Store(&hold{entered: entered, release: release, check: func() {
		if unsubscribed.Load() {
			returnedEarly.Store(true)
		}
	}})
	<-entered
	unsubDone := make(chan struct{})
	go func() {
		sub.Unsubscribe()
		unsubscribed.Store(true)
		close(unsubDone)
	}()
	// A correct Unsubscribe waits for the held callback; give a wrong one
	// the moment it needs to return (polled, bounded), then let go.
	deadline := time.Now().Add(50 * time.Millisecond)
	for !unsubscribed.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
	close(release)
	<-unsubDone
	if returnedEarly.Load() {
		t.Error("Unsubscribe returned while a callback of the registration was still running")
	}
	if n := gone.inFlight.Load(); n != 0 {
		t.Errorf("%d callbacks of the registration still running when Unsubscribe returned", n)
	}
	calls := gone.callCount()
	close(stop)
	wg.Wait()
	sub.Unsubscribe() // safe twice
	publish(t, nodes[1], ns, "after")
	publish(t, nodes[0], ns, "after-local")
	eventually(t, "the other registration to get the keys after", func() bool { return stays.has("after", "after-local") })
	if got := gone.callCount(); got != calls {
		t.Errorf("the registration got %d callbacks after Unsubscribe returned", got-calls)
	}
}

func (b *busRun) lost(t *testing.T) {
	if b.s.Lossy == nil {
		t.Skip("BusSuite.Lossy is nil")
	}
	nodes, lose := b.s.Lossy(t)
	if len(nodes) != 2 {
		t.Fatalf("BusSuite.Lossy returned %d nodes, want 2", len(nodes))
	}
	ns := b.namespace()
	r := newRecorder()
	subscribe(t, nodes[1], ns, r)
	publish(t, nodes[0], ns, "k0")
	eventually(t, "k0", func() bool { return r.has("k0") })
	flushes := r.flushCount()
	lose()
	publish(t, nodes[0], ns, "k1") // lost
	publish(t, nodes[0], ns, "k2")
	eventually(t, "the lost key's invalidation made up by a flush", func() bool { return r.flushCount() > flushes || r.has("k1") })
	if r.has("k1") {
		t.Log("the message was delivered although lose was called: the check proves nothing")
	}
}

// closer is a Bus with a Close method (package invalidation's has one).
type closer interface {
	Close() error
}

func (b *busRun) close(t *testing.T) {
	nodes := b.nodes(t, 3)
	c, ok := nodes[0].(closer)
	if !ok {
		t.Skipf("%T has no Close() error method", nodes[0])
	}
	ns := b.namespace()
	closing, peer := newRecorder(), newRecorder()
	sub := subscribe(t, nodes[0], ns, closing)
	subscribe(t, nodes[1], ns, peer)
	publish(t, nodes[1], ns, "before")
	eventually(t, "the key before Close", func() bool { return closing.has("before") })
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v, want nil", err)
	}
	if n := closing.inFlight.Load(); n != 0 {
		t.Errorf("%d callbacks still running when Close returned", n)
	}
	calls := closing.callCount()
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := nodes[0].Publish(ctxOf(t), ns, []string{"k"}); err == nil {
		t.Error("Publish after Close = nil, want an error")
	}
	if err := sub.Publish(ctxOf(t), []string{"k"}); err == nil {
		t.Error("Subscription.Publish after Close = nil, want an error")
	}
	if _, err := nodes[0].Subscribe(ns, func([]string) {}, func() {}); err == nil {
		t.Error("Subscribe after Close = nil error, want an error")
	}
	publish(t, nodes[2], ns, "after")
	eventually(t, "an open node to get the key published after Close", func() bool { return peer.has("after") })
	if got := closing.callCount(); got != calls {
		t.Errorf("the closed node's registration got %d callbacks after Close returned", got-calls)
	}
	sub.Unsubscribe() // safe after Close
}

func leaseWaker(t *testing.T, bus driver.Bus) driver.LeaseWaker {
	t.Helper()
	w, ok := bus.(driver.LeaseWaker)
	if !ok {
		t.Skipf("%T does not implement driver.LeaseWaker", bus)
	}
	return w
}

func (b *busRun) tokens(t *testing.T) {
	nodes := b.nodes(t, 1)
	w := leaseWaker(t, nodes[0])
	seen := make(map[uint64]bool)
	for range 1000 {
		tok := w.LeaseToken()
		if tok == 0 {
			t.Fatal("LeaseToken returned 0")
		}
		if seen[tok] {
			t.Fatalf("LeaseToken returned %d twice in 1000 calls", tok)
		}
		seen[tok] = true
	}
}

func woken(t *testing.T, wake <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wake:
	case <-ctxOf(t).Done():
		t.Fatalf("%s: no wake", what)
	}
}

func (b *busRun) wakeLocal(t *testing.T) {
	nodes := b.nodes(t, 1)
	w := leaseWaker(t, nodes[0])
	ns := b.namespace()
	tok := w.LeaseToken()
	w.HoldLease(ns, "k")
	wake, done := w.AwaitLease(ns, "k", tok)
	defer done()
	w.LeaseResolved(ns, "k")
	woken(t, wake, "a waiter of the holder's node after LeaseResolved")
	done()
	done() // safe twice
}

func (b *busRun) wakeRemote(t *testing.T) {
	nodes := b.nodes(t, 2)
	holder, waiter := leaseWaker(t, nodes[0]), leaseWaker(t, nodes[1])
	ns := b.namespace()
	for i := range 3 {
		key := fmt.Sprint("k", i)
		tok := holder.LeaseToken()
		holder.HoldLease(ns, key)
		wake, done := waiter.AwaitLease(ns, key, tok)
		if i == 1 {
			// A resolution racing with the waiter's announcement.
			holder.LeaseResolved(ns, key)
		} else {
			// Give the announcement the time a bus message takes.
			r := newRecorder()
			subscribe(t, nodes[0], ns, r)
			publish(t, nodes[1], ns, "marker"+key)
			eventually(t, "the marker", func() bool { return r.has("marker" + key) })
			holder.LeaseResolved(ns, key)
		}
		woken(t, wake, fmt.Sprintf("round %d: a waiter on another node after LeaseResolved", i))
		done()
	}
}

func carrying(t *testing.T, sub driver.Subscription) driver.CarryingSubscription {
	t.Helper()
	cs, ok := sub.(driver.CarryingSubscription)
	if !ok {
		t.Skipf("%T does not implement driver.CarryingSubscription", sub)
	}
	return cs
}

func (b *busRun) carryForeign(t *testing.T) {
	nodes := b.nodes(t, 2)
	ns := b.namespace()
	self, sibling, remote := newRecorder(), newRecorder(), newRecorder()
	cs := carrying(t, subscribe(t, nodes[0], ns, self))
	subscribe(t, nodes[0], ns, sibling)
	subscribe(t, nodes[1], ns, remote)
	foreign := driver.NewCarrier(new(int)) // names a pool no bus uses
	sent := 0
	carried, err := cs.Carry(ctxOf(t), "k", "drivertest:k", foreign, func(context.Context, string, string, []byte) error {
		sent++
		return nil
	})
	if carried || err != nil || sent != 0 {
		t.Fatalf("Carry through a foreign Carrier = %v, %v with %d sends; want false, nil, 0", carried, err, sent)
	}
	publish(t, nodes[0], ns, "marker")
	eventually(t, "the marker", func() bool { return remote.has("marker") })
	if sibling.has("k") || remote.has("k") {
		t.Error("a declined Carry delivered its key")
	}
}

func (b *busRun) carry(t *testing.T) {
	if b.s.Carrier == nil {
		t.Skip("BusSuite.Carrier is nil")
	}
	nodes := b.nodes(t, 2)
	ns := b.namespace()
	self, sibling, remote := newRecorder(), newRecorder(), newRecorder()
	cs := carrying(t, subscribe(t, nodes[0], ns, self))
	subscribe(t, nodes[0], ns, sibling)
	subscribe(t, nodes[1], ns, remote)
	via, send := b.s.Carrier(t, nodes[0])
	carriedAny := false
	defer func() {
		if !carriedAny {
			t.Log("every Carry declined: the check of carried delivery proves nothing")
		}
	}()
	for i := range 5 {
		key := fmt.Sprint("k", i)
		sends := 0
		carried, err := cs.Carry(ctxOf(t), key, "drivertest:"+key, via, func(ctx context.Context, command, channel string, payload []byte) error {
			sends++
			return send(ctx, command, channel, payload)
		})
		if err != nil {
			t.Fatalf("Carry(%q): %v", key, err)
		}
		switch {
		case !carried && sends != 0:
			t.Fatalf("Carry(%q) declined but called send %d times", key, sends)
		case !carried:
			// Declined (a busy channel, a slot served elsewhere): the
			// cache publishes the usual way.
			if err := cs.(driver.Subscription).Publish(ctxOf(t), []string{key}); err != nil {
				t.Fatal(err)
			}
		case sends != 1:
			t.Fatalf("Carry(%q) carried with %d sends, want 1", key, sends)
		default:
			carriedAny = true
		}
		if !sibling.has(key) {
			t.Errorf("when Carry(%q) returned, the other registration of the node did not have the key", key)
		}
		eventually(t, "the other node to get the carried key", func() bool { return remote.has(key) })
		if self.has(key) {
			t.Errorf("the carrying registration was given its own key %q", key)
		}
	}
}
