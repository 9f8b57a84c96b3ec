package invalidation

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/bushook"
	"github.com/tiercache/tiercache/tiered/driver"
)

// noticeLog records the lease notices a bus sends and receives (through the
// drop hook, dropping those drop says).
type noticeLog struct {
	mu   sync.Mutex
	seen []bushook.Msg // outgoing and incoming, in hook order
	out  []bool
	drop func(outgoing bool, m bushook.Msg) bool
	ch   chan struct{} // signalled on every notice
}

func newNoticeLog() *noticeLog { return &noticeLog{ch: make(chan struct{}, 1)} }

func (l *noticeLog) option() Option {
	return withDrop(func(outgoing bool, m bushook.Msg) bool {
		if !msgKind(m.Kind).notice() {
			return false
		}
		l.mu.Lock()
		l.seen = append(l.seen, bushook.Msg{Kind: m.Kind, Origin: m.Origin, Namespace: m.Namespace, Keys: slices.Clone(m.Keys)})
		l.out = append(l.out, outgoing)
		drop := l.drop != nil && l.drop(outgoing, m)
		l.mu.Unlock()
		select {
		case l.ch <- struct{}{}:
		default:
		}
		return drop
	})
}

// await waits until the log holds a notice matching want, and returns
// everything logged up to and including it.
func (l *noticeLog) await(t *testing.T, what string, want func(outgoing bool, m bushook.Msg) bool) []bushook.Msg {
	t.Helper()
	got, ok := l.awaitWithin(10*time.Second, want)
	if !ok {
		t.Fatalf("timed out waiting for %s", what)
	}
	return got
}

// awaitResent is await for a notice that may be lost (pub/sub delivers at
// most once, and a bus renewing its subscription on a busy machine misses
// what is sent meanwhile): send sends it and returns its cleanup; it is
// sent again every 2 s until the log has it, for up to 20 s.
func (l *noticeLog) awaitResent(t *testing.T, what string, want func(outgoing bool, m bushook.Msg) bool, send func() (cleanup func())) []bushook.Msg {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		cleanup := send()
		got, ok := l.awaitWithin(2*time.Second, want)
		if ok {
			t.Cleanup(cleanup)
			return got
		}
		cleanup()
	}
	t.Fatalf("timed out waiting for %s (sent every 2 s for 20 s)", what)
	return nil
}

// awaitWithin waits up to d for a message want accepts; it returns the
// messages seen up to and including it.
func (l *noticeLog) awaitWithin(d time.Duration, want func(outgoing bool, m bushook.Msg) bool) ([]bushook.Msg, bool) {
	timeout := time.After(d)
	for {
		l.mu.Lock()
		for i, m := range l.seen {
			if want(l.out[i], m) {
				got := slices.Clone(l.seen[:i+1])
				l.mu.Unlock()
				return got, true
			}
		}
		l.mu.Unlock()
		select {
		case <-l.ch:
		case <-timeout:
			return nil, false
		}
	}
}

func isNotice(kind msgKind, outgoing bool, origin uint64, key string) func(bool, bushook.Msg) bool {
	return func(out bool, m bushook.Msg) bool {
		return out == outgoing && msgKind(m.Kind) == kind && m.Origin == origin && slices.Contains(m.Keys, key)
	}
}

func woken(wake <-chan struct{}) bool {
	select {
	case <-wake:
		return true
	default:
		return false
	}
}

func awaitWake(t *testing.T, wake <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// pair starts two buses on one transport, with notice logs.
func pair(t *testing.T, tr transport) (a, b *Bus, la, lb *noticeLog) {
	t.Helper()
	la, lb = newNoticeLog(), newNoticeLog()
	opts := append([]Option{WithChannelPrefix(uniqueName(t))}, tr.opts...)
	a = newBus(t, tr.client(t), append(slices.Clone(opts), la.option())...)
	b = newBus(t, tr.client(t), append(slices.Clone(opts), lb.option())...)
	return a, b, la, lb
}

// TestLeaseNoticeWakesOtherNode: B waits on A's lease and announces it; A
// marks its lease as waited for and, when it resolves it, sends one filled
// notice that wakes B. Before that, nothing wakes B.
func TestLeaseNoticeWakesOtherNode(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			a, b, la, lb := pair(t, tr)
			a.HoldLease("users", "42")
			wake, done := b.AwaitLease("users", "42", a.LeaseToken())
			defer done()
			la.await(t, "A to hear B's wait notice", isNotice(kindLeaseWait, false, b.Origin(), "42"))
			if woken(wake) {
				t.Fatal("B was woken before A resolved its lease")
			}
			a.LeaseResolved("users", "42")
			awaitWake(t, wake, "B's wake after A resolved")
			got := lb.await(t, "B to hear A's filled notice", isNotice(kindLeaseFilled, false, a.Origin(), "42"))
			if m := got[len(got)-1]; m.Namespace != "users" || !slices.Equal(m.Keys, []string{"42"}) {
				t.Errorf("filled notice = %+v, want namespace users, keys [42]", m)
			}
			assertEmpty(t, a)
			done()
			assertEmpty(t, b)
		})
	}
}

// TestLeaseNoticeOnlyWhenWaited: a lease nobody waits for costs no notice.
// The bus sends its notices in order, so once a later wait notice went
// out, an earlier filled notice would have too.
func TestLeaseNoticeOnlyWhenWaited(t *testing.T) {
	a, _, la, _ := pair(t, transports()[0])
	a.HoldLease("users", "1")
	a.LeaseResolved("users", "1")
	_, done := a.AwaitLease("users", "sentinel", a.LeaseToken())
	defer done()
	got := la.await(t, "A's wait notice for the sentinel", isNotice(kindLeaseWait, true, a.Origin(), "sentinel"))
	if len(got) != 1 {
		t.Fatalf("A sent %+v before the sentinel, want nothing (no one waited on key 1)", got[:len(got)-1])
	}
}

// TestLeaseNoticeLateWait: a wait notice that reaches the holder after it
// resolved the lease (a short load) is answered at once.
func TestLeaseNoticeLateWait(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			a, b, la, _ := pair(t, tr)
			a.HoldLease("users", "7")
			a.LeaseResolved("users", "7")
			wake, done := b.AwaitLease("users", "7", a.LeaseToken())
			defer done()
			awaitWake(t, wake, "B's wake by A's answer")
			la.await(t, "A's answer", isNotice(kindLeaseFilled, true, a.Origin(), "7"))
		})
	}
}

// TestLeaseNoticeInProcess: a waiter in the process holding the lease is
// woken by LeaseResolved itself, and announces nothing on Redis.
func TestLeaseNoticeInProcess(t *testing.T) {
	a, _, la, _ := pair(t, transports()[0])
	a.HoldLease("users", "9")
	wake, done := a.AwaitLease("users", "9", a.LeaseToken())
	defer done()
	other, doneOther := a.AwaitLease("orders", "9", a.LeaseToken())
	defer doneOther()
	if woken(wake) {
		t.Fatal("woken before the lease was resolved")
	}
	a.LeaseResolved("users", "9")
	if !woken(wake) {
		t.Fatal("not woken when LeaseResolved returned")
	}
	if woken(other) {
		t.Fatal("a waiter on another namespace was woken")
	}
	// A waiter that registers just after a local resolution reads again
	// at once: the resolution may have come between its read and now.
	late, doneLate := a.AwaitLease("users", "9", a.LeaseToken())
	defer doneLate()
	if !woken(late) {
		t.Fatal("a waiter registered just after a resolution was not woken")
	}
	got := la.await(t, "the wait notice of orders/9", isNotice(kindLeaseWait, true, a.Origin(), "9"))
	for _, m := range got {
		if m.Namespace == "users" {
			t.Fatalf("A sent %+v: a wait on a lease of its own must stay in-process", m)
		}
	}
}

// TestLeaseNoticeIgnoresGarbage: what arrives on an inbox carries no
// invalidation: anything undecodable or unknown there is counted and
// ignored, never a flush. The old-release case: a newer version's notice.
func TestLeaseNoticeIgnoresGarbage(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			a, b, _, _ := pair(t, tr)
			rec := newRecorder()
			rec.subscribe(t, b, "users")
			wake, done := b.AwaitLease("users", "1", a.LeaseToken())
			defer done()
			future := appendMessage(nil, &message{Origin: a.Origin(), Kind: kindLeaseFilled, Namespace: "users", Keys: []string{"1"}})
			future[1] = wireVersion + 1
			keys := appendMessage(nil, &message{Origin: a.Origin(), Seq: 1, Kind: kindKeys, Namespace: "users", Keys: []string{"1"}})
			ch := b.inbox
			for _, p := range [][]byte{[]byte("garbage"), future, keys} {
				if err := a.publishCmd(ctx, a.client, ch, p).Err(); err != nil {
					t.Fatalf("publish: %v", err)
				}
			}
			eventually(t, 10*time.Second, "three decode errors", func() bool { return b.Stats().DecodeErrors >= 3 })
			if n := rec.flushCount(); n != 0 {
				t.Errorf("flushes = %d, want 0", n)
			}
			if rec.count() != 0 {
				t.Errorf("invalidated %v from an inbox", rec.sortedKeys())
			}
			if woken(wake) {
				t.Error("woken by an unreadable notice")
			}
		})
	}
}

// TestLeaseNoticeAfterClose: every method is safe on a closed bus, and
// sends nothing.
func TestLeaseNoticeAfterClose(t *testing.T) {
	a, _, _, _ := pair(t, transports()[0])
	wake, done := a.AwaitLease("users", "1", a.LeaseToken())
	_ = a.Close()
	a.HoldLease("users", "2")
	a.LeaseResolved("users", "2")
	late, doneLate := a.AwaitLease("users", "3", a.LeaseToken())
	a.LeaseResolved("users", "1")
	if !woken(wake) {
		t.Error("a local waiter was not woken by a resolution after Close")
	}
	if woken(late) {
		t.Error("woken without a resolution")
	}
	done()
	done()
	doneLate()
	assertEmpty(t, a)
}

// TestLeaseNoticeBatch: notices queued together go out packed, one message
// per kind, inbox and namespace, each key once, each to its inbox.
func TestLeaseNoticeBatch(t *testing.T) {
	b := &Bus{origin: 1, clock: driver.SystemClock, log: testLogger(t), channels: []string{"c0"}}
	var sent []message
	b.cfg.hooks.Drop = func(out bool, m bushook.Msg) bool {
		sent = append(sent, message{Kind: msgKind(m.Kind), Namespace: m.Namespace, Keys: slices.Clone(m.Keys)})
		return true // dropped: nothing goes to Redis (there is no client)
	}
	var batch []notice
	for i, k := range []string{"a", "b", "c", "a", "d"} {
		batch = append(batch, notice{kindLeaseWait, uint16(i % 2), leaseKey{"users", k}})
	}
	batch = append(batch, notice{kindLeaseFilled, 0, leaseKey{"users", "a"}}, notice{kindLeaseWait, 0, leaseKey{"orders", "a"}})
	b.sendNotices(context.Background(), batch)
	keys := map[string]int{}
	for _, m := range sent {
		for _, k := range m.Keys {
			keys[m.Kind.String()+" "+m.Namespace+"/"+k]++
		}
	}
	want := map[string]int{"lease wait users/a": 2, "lease wait users/b": 1, "lease wait users/c": 1, "lease wait users/d": 1, "lease filled users/a": 1, "lease wait orders/a": 1}
	if !maps.Equal(keys, want) {
		t.Errorf("sent %v, want %v", keys, want)
	}
	// users: a, c to hint 0 and b, d to hint 1 ("a" again to hint 1 is a
	// separate notice); then filled users, wait orders.
	if len(sent) != 4 {
		t.Errorf("%d messages %+v, want 4 (wait users to 2 inboxes, filled users, wait orders)", len(sent), sent)
	}
}

// TestLeaseNoticeAddressed: notices go to the holder's inbox and back to the
// waiter's, not to every bus: a third bus hears none of them.
func TestLeaseNoticeAddressed(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			la, lb, lc := newNoticeLog(), newNoticeLog(), newNoticeLog()
			opts := append([]Option{WithChannelPrefix(uniqueName(t))}, tr.opts...)
			var buses []*Bus
			for _, l := range []*noticeLog{la, lb, lc} {
				for {
					// Three distinct hints (buses sharing one hear each other's notices).
					x := newBus(t, tr.client(t), append(slices.Clone(opts), l.option())...)
					if !slices.ContainsFunc(buses, func(y *Bus) bool { return hintOf(y.Origin()) == hintOf(x.Origin()) }) {
						buses = append(buses, x)
						break
					}
					_ = x.Close()
				}
			}
			a, b, c := buses[0], buses[1], buses[2]
			token := a.LeaseToken()
			if hintOf(token) != hintOf(a.Origin()) || token == 0 {
				t.Fatalf("token %x does not carry A's hint %x", token, hintOf(a.Origin()))
			}
			a.HoldLease("users", "5")
			wake, done := b.AwaitLease("users", "5", token)
			defer done()
			la.await(t, "A to hear B wait", isNotice(kindLeaseWait, false, b.Origin(), "5"))
			a.LeaseResolved("users", "5")
			awaitWake(t, wake, "B's wake")
			lb.await(t, "B to hear A's filled notice", isNotice(kindLeaseFilled, false, a.Origin(), "5"))
			// C is a sentinel for itself: once it hears a notice B sends it
			// after all this, it would have heard the earlier ones.
			got := lc.awaitResent(t, "C to hear the sentinel", isNotice(kindLeaseWait, false, b.Origin(), "sentinel"), func() func() {
				_, doneC := b.AwaitLease("users", "sentinel", c.LeaseToken())
				return doneC
			})
			if len(got) != 1 {
				t.Errorf("C heard %+v, want only the sentinel", got)
			}
		})
	}
}

// assertEmpty checks that a bus holds no lease and no waiter.
func assertEmpty(t *testing.T, b *Bus) {
	t.Helper()
	b.notes.mu.Lock()
	defer b.notes.mu.Unlock()
	if len(b.notes.held) != 0 || len(b.notes.waiters) != 0 {
		t.Errorf("bus keeps %d leases and %d waiters, want none", len(b.notes.held), len(b.notes.waiters))
	}
}

// TestLeaseNoticeBeforeHold: a wait notice that reaches the holder's bus
// before its cache said it holds the lease is kept, and the resolution
// answers it.
func TestLeaseNoticeBeforeHold(t *testing.T) {
	a, b, la, _ := pair(t, transports()[1])
	wake, done := b.AwaitLease("users", "early", a.LeaseToken())
	defer done()
	la.await(t, "A to hear B wait", isNotice(kindLeaseWait, false, b.Origin(), "early"))
	a.HoldLease("users", "early")
	if woken(wake) {
		t.Fatal("woken before the lease was resolved")
	}
	a.LeaseResolved("users", "early")
	awaitWake(t, wake, "B's wake")
	a.notes.mu.Lock()
	defer a.notes.mu.Unlock()
	if len(a.notes.early) != 0 {
		t.Errorf("A keeps %d early waits, want 0", len(a.notes.early))
	}
}
