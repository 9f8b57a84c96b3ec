package tiered_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// fakeWaker is an in-process driver.LeaseWaker (and a Bus that carries
// nothing) shared by several caches: it wakes every waiter on a key when any
// holder resolves a lease on it, and counts the calls. Package invalidation
// does the same across processes.
type fakeWaker struct {
	mu         sync.Mutex
	held       map[string]int
	waiters    map[string]map[*chan struct{}]bool
	awaits     int
	onResolved func(key string) // called before waking, under no lock
	registered chan string      // gets the key of every AwaitLease
}

func newFakeWaker() *fakeWaker {
	return &fakeWaker{held: map[string]int{}, waiters: map[string]map[*chan struct{}]bool{}, registered: make(chan string, 100)}
}

func (f *fakeWaker) Publish(context.Context, string, []string) error { return nil }
func (f *fakeWaker) Subscribe(namespace string, _ func([]string), _ func()) (driver.Subscription, error) {
	return busSubscription{bus: f, namespace: namespace}, nil
}

func (f *fakeWaker) HoldLease(ns, key string) {
	f.mu.Lock()
	f.held[ns+"/"+key]++
	f.mu.Unlock()
}

func (f *fakeWaker) LeaseResolved(ns, key string) {
	if f.onResolved != nil {
		f.onResolved(key)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held[ns+"/"+key]--; f.held[ns+"/"+key] == 0 {
		delete(f.held, ns+"/"+key)
	}
	f.wakeLocked(ns + "/" + key)
}

// wake wakes the waiters on key of ns as a resolution would.
func (f *fakeWaker) wake(ns, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wakeLocked(ns + "/" + key)
}

func (f *fakeWaker) wakeLocked(k string) {
	for ch := range f.waiters[k] {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
}

func (f *fakeWaker) LeaseToken() uint64 { return rand.Uint64() | 1 }

func (f *fakeWaker) AwaitLease(ns, key string, _ uint64) (<-chan struct{}, func()) {
	k := ns + "/" + key
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	if f.waiters[k] == nil {
		f.waiters[k] = map[*chan struct{}]bool{}
	}
	f.waiters[k][&ch] = true
	f.awaits++
	f.mu.Unlock()
	f.registered <- key
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.waiters[k], &ch)
			if len(f.waiters[k]) == 0 {
				delete(f.waiters, k)
			}
			f.mu.Unlock()
		})
	}
}

// state returns the leases held, the registered waiters and the AwaitLease
// calls so far.
func (f *fakeWaker) state() (held, waiters, awaits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ws := range f.waiters {
		waiters += len(ws)
	}
	return len(f.held), waiters, f.awaits
}

func (f *fakeWaker) awaitRegistration(t *testing.T) {
	t.Helper()
	select {
	case <-f.registered:
	case <-time.After(10 * time.Second):
		t.Fatal("no waiter registered")
	}
}

// gate is a loader that blocks until released, and says when it started.
type gate struct {
	started chan struct{}
	release chan struct{}
	err     error
	calls   int
	mu      sync.Mutex
}

func newGate() *gate { return &gate{started: make(chan struct{}, 10), release: make(chan struct{})} }

func (g *gate) load(ctx context.Context, key string) (user, error) {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	g.started <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return user{}, ctx.Err()
	}
	return user{ID: key}, g.err
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// wakePoll is the lease poll of the waking tests: far longer than a wake
// takes, so a waiter that returns before it was woken, not polling.
const wakePoll = 2 * time.Second

// TestLeaseWaiterWoken: a waiter on another node's lease returns when the
// holder resolves the lease (a fill, or a failure marker), well before its
// first poll; the holder tells the bus only after the lease is resolved in
// L2; every registration ends.
func TestLeaseWaiterWoken(t *testing.T) {
	for _, fail := range []bool{false, true} {
		name := "fill"
		if fail {
			name = "failure"
		}
		t.Run(name, func(t *testing.T) {
			eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
				w := newFakeWaker()
				cacheName := redistest.Name(t)
				opts := []tiered.Option{tiered.WithInvalidation(w), tiered.WithLeasePoll(wakePoll, wakePoll)}
				a := newNode[user](t, cacheName, rdb, opts...)
				b := newNode[user](t, cacheName, rdb, opts...)
				var resolvedKind driver.Kind
				w.onResolved = func(key string) {
					e, err := a.l2.Get(context.Background(), cacheName+":"+key)
					if err != nil {
						t.Errorf("reading L2 at the resolution: %v", err)
					}
					resolvedKind = e.Kind
				}
				g := newGate()
				if fail {
					g.err = errors.New("database down")
				}
				aDone := make(chan error, 1)
				go func() { _, err := a.GetOrLoad(context.Background(), "k", g.load); aDone <- err }()
				<-g.started
				bStart := time.Now()
				bDone := make(chan error, 1)
				go func() {
					u, err := b.GetOrLoad(context.Background(), "k", g.load)
					if err == nil && u.ID != "k" {
						err = errors.New("wrong value " + u.ID)
					}
					bDone <- err
				}()
				w.awaitRegistration(t)
				close(g.release)
				if err := <-aDone; (err != nil) != fail {
					t.Fatalf("holder: %v", err)
				}
				err := <-bDone
				took := time.Since(bStart)
				switch {
				case fail && !errors.Is(err, tiered.ErrLoadFailed):
					t.Fatalf("waiter: %v, want ErrLoadFailed", err)
				case !fail && err != nil:
					t.Fatalf("waiter: %v", err)
				}
				if took >= wakePoll {
					t.Errorf("waiter returned after %v: by its poll (%v), not woken", took, wakePoll)
				}
				t.Logf("waiter returned %v after its call", took)
				if n := g.count(); n != 1 {
					t.Errorf("loader calls = %d, want 1", n)
				}
				want := driver.KindValue
				if fail {
					want = driver.KindFailed
				}
				if resolvedKind != want {
					t.Errorf("L2 held kind %d when the holder said it resolved the lease, want %d", resolvedKind, want)
				}
				if held, waiters, awaits := w.state(); held != 0 || waiters != 0 || awaits != 1 {
					t.Errorf("held %d, waiters %d, AwaitLease calls %d; want 0, 0, 1", held, waiters, awaits)
				}
			})
		})
	}
}

// TestLeaseWaiterNewLease: a waiter registers again when the lease it
// waits on is replaced by another (a Delete, then another node's load), and
// only then: a wake that finds the same lease does not register again. It
// ends with the second holder's value.
func TestLeaseWaiterNewLease(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		w := newFakeWaker()
		cacheName := redistest.Name(t)
		opts := []tiered.Option{tiered.WithInvalidation(w), tiered.WithLeasePoll(wakePoll, wakePoll)}
		a := newNode[user](t, cacheName, rdb, opts...)
		b := newNode[user](t, cacheName, rdb, opts...)
		c := newNode[user](t, cacheName, rdb, opts...)
		ctx := context.Background()
		ga, gc := newGate(), newGate()
		aDone := make(chan error, 1)
		go func() { _, err := a.GetOrLoad(ctx, "k", ga.load); aDone <- err }()
		<-ga.started
		bDone := make(chan error, 1)
		go func() { _, err := b.GetOrLoad(ctx, "k", ga.load); bDone <- err }()
		w.awaitRegistration(t)
		if err := c.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		cDone := make(chan error, 1)
		go func() { _, err := c.GetOrLoad(ctx, "k", gc.load); cDone <- err }()
		<-gc.started
		w.wake(cacheName, "k") // B reads again, finds C's lease
		w.awaitRegistration(t)
		w.wake(cacheName, "k") // B reads again, finds the same lease
		close(ga.release)      // A's fill is rejected (its lease is gone); B is woken, reads C's lease
		if err := <-aDone; err != nil {
			t.Fatalf("A: %v", err)
		}
		close(gc.release)
		if err := <-cDone; err != nil {
			t.Fatalf("C: %v", err)
		}
		start := time.Now()
		if err := <-bDone; err != nil {
			t.Fatalf("B: %v", err)
		}
		if took := time.Since(start); took >= wakePoll {
			t.Errorf("B returned %v after C's fill: by its poll, not woken", took)
		}
		if ga.count() != 1 || gc.count() != 1 {
			t.Errorf("loader calls A %d, C %d; want 1 each", ga.count(), gc.count())
		}
		if _, _, awaits := w.state(); awaits != 2 {
			t.Errorf("AwaitLease calls = %d, want 2 (one per lease waited on)", awaits)
		}
	})
}

// TestLeaseWaiterCancelAndClose: a waiter's caller gives up on its own ctx
// at once (its flight waits on); Close ends the flight, and with it the
// registration.
func TestLeaseWaiterCancelAndClose(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		w := newFakeWaker()
		cacheName := redistest.Name(t)
		opts := []tiered.Option{tiered.WithInvalidation(w), tiered.WithLeasePoll(wakePoll, wakePoll)}
		a := newNode[user](t, cacheName, rdb, opts...)
		b := newNode[user](t, cacheName, rdb, opts...)
		g := newGate()
		aDone := make(chan error, 1)
		go func() { _, err := a.GetOrLoad(context.Background(), "k", g.load); aDone <- err }()
		<-g.started
		ctx, cancel := context.WithCancel(context.Background())
		bDone := make(chan error, 1)
		go func() { _, err := b.GetOrLoad(ctx, "k", g.load); bDone <- err }()
		w.awaitRegistration(t)
		cancel()
		if err := <-bDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled waiter: %v, want context.Canceled", err)
		}
		if _, waiters, _ := w.state(); waiters != 1 {
			t.Fatalf("waiters = %d after the caller gave up, want 1 (the flight waits on)", waiters)
		}
		b.Close()
		if _, waiters, _ := w.state(); waiters != 0 {
			t.Fatalf("waiters = %d after Close, want 0", waiters)
		}
		close(g.release)
		if err := <-aDone; err != nil {
			t.Fatalf("holder: %v", err)
		}
		if held, _, _ := w.state(); held != 0 {
			t.Fatalf("held = %d after the holder returned, want 0", held)
		}
	})
}
