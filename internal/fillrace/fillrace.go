// Package fillrace forces the interleavings of the write-path tests
// (issue 10 items 1 and 2) in package tiered and in test/invalidation: a
// driver.Remote that runs hooks around the L2 calls preceding an L1 fill,
// and a driver that puts another node's write between an early refresh's
// compare-and-swap and its L1 fill. Test code only.
package fillrace

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/tiered"
)

// Remote wraps a driver.Remote and calls its hooks (those not nil). Set a
// hook before the calls it must see, and change it only while no call is
// in flight.
type Remote struct {
	driver.Remote
	// AfterSet runs after a Set that succeeded, before the node fills L1.
	AfterSet func(key string)
	// AfterAcquire runs after an Acquire without error.
	AfterAcquire func(key string, won bool)
	// BeforeCAS runs before every CompareAndSwap.
	BeforeCAS func(key string)
	// AfterCAS runs after a CompareAndSwap without error.
	AfterCAS func(key string, swapped bool)
	// AfterCAD runs after every CompareAndDelete.
	AfterCAD func(key string)
}

// Set implements driver.Remote.
func (r *Remote) Set(ctx context.Context, key string, e driver.Entry) error {
	err := r.Remote.Set(ctx, key, e)
	if r.AfterSet != nil && err == nil {
		r.AfterSet(key)
	}
	return err
}

// Acquire implements driver.Remote.
func (r *Remote) Acquire(ctx context.Context, key string, token uint64, exp time.Time) (driver.Entry, bool, error) {
	cur, won, err := r.Remote.Acquire(ctx, key, token, exp)
	if r.AfterAcquire != nil && err == nil {
		r.AfterAcquire(key, won)
	}
	return cur, won, err
}

// CompareAndSwap implements driver.Remote.
func (r *Remote) CompareAndSwap(ctx context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	if r.BeforeCAS != nil {
		r.BeforeCAS(key)
	}
	ok, err := r.Remote.CompareAndSwap(ctx, key, version, e)
	if r.AfterCAS != nil && err == nil {
		r.AfterCAS(key, ok)
	}
	return ok, err
}

// CompareAndDelete implements driver.Remote.
func (r *Remote) CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error) {
	ok, err := r.Remote.CompareAndDelete(ctx, key, version)
	if r.AfterCAD != nil {
		r.AfterCAD(key)
	}
	return ok, err
}

// OnceAfterSet makes the next Set that succeeds run between once, after its
// L2 write and before the node's L1 fill (issue 10 item 1: another node's
// whole Set lands there).
func (r *Remote) OnceAfterSet(between func()) {
	var once sync.Once
	r.AfterSet = func(string) { once.Do(between) }
}

// RefreshOptions are cache options under which nearly every L2 hit starts
// an early refresh: no jitter and a huge XFetch beta. With Loader's slow
// first load, the first value's L1 copy ends at once, so every read
// reaches L2.
func RefreshOptions() []tiered.Option {
	return []tiered.Option{tiered.WithJitter(0), tiered.WithEarlyRefresh(100_000)}
}

// Loader returns a loader whose first call takes 20 ms (the first query's
// duration, for XFetch) and returns first, and whose later calls return
// later at once; calls counts them.
func Loader(first, later string) (load func(context.Context, string) (string, error), calls *atomic.Int64) {
	calls = new(atomic.Int64)
	return func(context.Context, string) (string, error) {
		if calls.Add(1) == 1 {
			time.Sleep(20 * time.Millisecond) // the load's duration itself
			return first, nil
		}
		return later, nil
	}, calls
}

// refreshLease marks the lease key of an early refresh.
const refreshLease = "\x00refresh:"

// RaceRefresh forces issue 10 item 2 on the node whose L2 is r: it calls
// read (an L2 hit returning want) until one starts an early refresh; it
// holds the refresh before its compare-and-swap until the reads have
// stopped; right after the swap succeeded, before the refresh's L1 fill,
// it runs between (another node's write, which must have reached this
// node when between returns); it returns once the refresh released its
// lease. It fails t when no refresh starts in 200 reads, or the refresh
// does not finish by ctx's end or within 10 s. It sets r's AfterAcquire,
// BeforeCAS, AfterCAS and AfterCAD.
func RaceRefresh(t testing.TB, ctx context.Context, r *Remote, read func() (string, error), want string, between func()) {
	t.Helper()
	started := make(chan struct{}, 1)
	proceed := make(chan struct{})
	var proceedOnce sync.Once
	release := func() { proceedOnce.Do(func() { close(proceed) }) }
	t.Cleanup(release) // a refresh held when t fails must not outlive it
	done := make(chan struct{})
	var refreshing, ran atomic.Bool
	var doneOnce sync.Once
	r.AfterAcquire = func(key string, won bool) {
		if won && strings.Contains(key, refreshLease) {
			refreshing.Store(true)
		}
	}
	// A first load's conditional fill is a compare-and-swap too: only the
	// refresh's waits.
	r.BeforeCAS = func(string) {
		if !refreshing.Load() {
			return
		}
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-proceed:
		case <-ctx.Done():
		}
	}
	r.AfterCAS = func(_ string, swapped bool) {
		if swapped && refreshing.Load() && !ran.Swap(true) {
			between()
		}
	}
	r.AfterCAD = func(key string) {
		if strings.Contains(key, refreshLease) && ran.Load() {
			doneOnce.Do(func() { close(done) })
		}
	}
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("no early refresh reached its swap in 200 L2 hits")
		}
		if v, err := read(); err != nil || v != want {
			t.Fatalf("read %d = %q, %v; want %q", i, v, err, want)
		}
		select {
		case <-started:
		default:
			continue
		}
		break
	}
	release()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the refresh never finished")
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh did not finish in 10 s")
	}
}
