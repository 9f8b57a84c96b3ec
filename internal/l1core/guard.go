package l1core

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Stripes is the number of generation counters of a Guard.
const Stripes = 4096

// Table is the map a Guard protects: what the guard needs to remove entries.
type Table interface {
	// Delete removes key.
	Delete(key string)
	// Clear removes every entry.
	Clear()
}

// Guard is the generation guard of an L1 store, and the lock that orders
// Close after every write in progress (writes hold it for reading; Get does
// not take it). Call Init before use. All methods are safe for concurrent
// use; a closed Guard refuses writes.
type Guard struct {
	seed    maphash.Seed
	stripes [Stripes]atomic.Uint64
	epoch   atomic.Uint64
	closed  atomic.Bool
	mu      sync.RWMutex
}

// Init prepares g for use.
func (g *Guard) Init() { g.seed = maphash.MakeSeed() }

// Closed reports whether Close ran. Get checks it on the hit path (one
// atomic load).
func (g *Guard) Closed() bool { return g.closed.Load() }

func (g *Guard) stripe(key string) *atomic.Uint64 {
	return &g.stripes[maphash.String(g.seed, key)%Stripes]
}

// Epoch returns the flush epoch. A store records it in each entry when the
// entry is filled and Get treats an entry from an older epoch as a miss: a
// Flush then hides every entry at once (one atomic load per hit), though
// the map may take a while to clear them (ristretto's Clear took up to
// 1.7 s under -race on a busy machine, long enough to break the staleness
// bound while entries stayed readable).
func (g *Guard) Epoch() uint64 { return g.epoch.Load() }

// Generation returns key's generation: it changes with every Invalidate of
// key (or of a key sharing its stripe) and every Flush. Invalidate of one key
// adds exactly one to it (the driver.Local contract).
func (g *Guard) Generation(key string) uint64 {
	return g.stripe(key).Load() + g.epoch.Load()
}

// Lock takes g for a write and reports whether it did: false when g is
// closed (then there is nothing to unlock). Unlock releases it.
func (g *Guard) Lock() bool {
	g.mu.RLock()
	if g.closed.Load() {
		g.mu.RUnlock()
		return false
	}
	return true
}

// Unlock releases what Lock took.
func (g *Guard) Unlock() { g.mu.RUnlock() }

// Fill stores one entry under the guard and reports whether it stayed: store
// writes it to the map (reporting false when the map refused it), recording
// epoch in the entry (the epoch read before the generation check, so an
// entry that passes the check carries an epoch no later than its Flush's);
// settle,
// when not nil, waits until the map applied the write; then, if an
// Invalidate or Flush changed key's generation since gen (it changes the
// generation before deleting, so it is always seen here), the entry is
// deleted again from t (at worst a newer entry, which is only a miss).
func (g *Guard) Fill(t Table, key string, gen uint64, store func(epoch uint64) bool, settle func()) bool {
	if !g.Lock() {
		return false
	}
	defer g.Unlock()
	epoch := g.epoch.Load()
	if g.Generation(key) != gen || !store(epoch) {
		return false
	}
	if settle != nil {
		settle()
	}
	if g.Generation(key) != gen {
		t.Delete(key)
		return false
	}
	return true
}

// Invalidate changes the generation of keys, then deletes them from t.
func (g *Guard) Invalidate(t Table, keys ...string) {
	if !g.Lock() {
		return
	}
	defer g.Unlock()
	for _, k := range keys {
		g.stripe(k).Add(1)
		t.Delete(k)
	}
}

// Flush changes every generation, then clears t.
func (g *Guard) Flush(t Table) {
	if !g.Lock() {
		return
	}
	defer g.Unlock()
	g.epoch.Add(1)
	t.Clear()
}

// Close waits for the writes in progress, marks g closed, changes every
// generation and runs stop (which releases the map). It reports whether it
// closed g: only the first call does.
func (g *Guard) Close(stop func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed.CompareAndSwap(false, true) {
		return false
	}
	g.epoch.Add(1)
	stop()
	return true
}
