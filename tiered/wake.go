package tiered

import (
	"math/rand/v2"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Woken lease waiters (DESIGN §6.1, "waiters never starve").
//
// A caller that finds another's lease on a key waits for the holder's
// result. With a bus that implements LeaseWaker (package invalidation
// does), the wait ends when the holder resolves the lease:
//
//  1. The holder takes its token from LeaseToken (it tells the waiters how
//     to reach the holder's bus), calls HoldLease when it has the lease
//     (loadLeased) and LeaseResolved once the lease is replaced in L2 by the
//     value, a marker, or nothing (storeLeased has returned). Neither sends
//     anything unless someone waits.
//  2. A waiter registers with AwaitLease once per lease it waits on (a new
//     token, after a takeover or a new lease, registers again so that the
//     new holder hears of it) and unregisters when fetchRemote returns.
//  3. The wait selects on the wake, the poll timer and ctx; a wake reads L2
//     again at once.
//
// Polling with backoff (WithLeasePoll) stays as it was: a wake is a hint,
// and a lost notice only means the waiter learns of the result at its next
// poll. A waiter is still bounded by its ctx and by half its flight (then it
// loads for itself).
//
// Leases of a batch (GetOrLoadMany's won keys) are held the same way: each
// is announced as resolved once the batch's fills (or its markers) are in
// L2.

// waker returns the cache's bus as a LeaseWaker, or nil when it has none or
// leases are off.
func (c *Cache[V]) waker() driver.LeaseWaker {
	if c.cfg.noLeases || c.cfg.bus == nil {
		return nil
	}
	w, _ := c.cfg.bus.(driver.LeaseWaker)
	return w
}

// holdLease tells the bus this node holds the lease on key; the returned
// function tells it the lease was resolved. Without a waking bus both do
// nothing.
func (c *Cache[V]) holdLease(key string) (resolved func()) {
	w := c.waker()
	if w == nil {
		return noCancel
	}
	w.HoldLease(c.name, key)
	return func() { w.LeaseResolved(c.name, key) }
}

// newToken returns a fresh lease token: from a waking bus, which makes its
// waiters able to reach it, else random.
func (c *Cache[V]) newToken() uint64 {
	if w := c.waker(); w != nil {
		return w.LeaseToken()
	}
	return rand.Uint64()
}

// leaseWait is a waiter's registration with a waking bus, for one key.
type leaseWait struct {
	w     driver.LeaseWaker // nil: no waking bus; wake stays nil and never fires
	ns    string
	key   string
	token uint64 // the lease registered for; 0 before the first
	wake  <-chan struct{}
	done  func()
}

// await registers the waiter for the lease with token, once per lease: a
// new token unregisters the old registration and announces the waiter
// again.
func (l *leaseWait) await(token uint64) {
	if l.w == nil || token == l.token {
		return
	}
	l.end()
	l.wake, l.done = l.w.AwaitLease(l.ns, l.key, token)
	l.token = token
}

// end unregisters the waiter; it is safe to call more than once.
func (l *leaseWait) end() {
	if l.done != nil {
		l.done()
		l.done, l.wake = nil, nil
	}
}
