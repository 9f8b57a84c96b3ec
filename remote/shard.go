package remote

import (
	"context"
	"sync/atomic"
	"time"
)

// shardTTL is how long Shard trusts what it learnt of a slot's primary.
// go-redis moves a slot to its new primary when it sees MOVED or reloads
// its map; Shard follows within shardTTL, or at once after a reload the
// store asked for (maybeReload).
const shardTTL = time.Second

// After a reload the store asked for, go-redis reloads its slot map in the
// background: what it answers meanwhile may still be the old primary. For
// shardSettle after asking, Shard remembers an answer for shardRecheck
// only, so it follows the new map within shardRecheck of go-redis loading
// it (remembering the old primary for a full shardTTL kept writes behind
// the dead primary's open breaker after a failover).
const (
	shardSettle  = 2 * time.Second
	shardRecheck = 20 * time.Millisecond
)

// shardMap remembers the primary of each hash slot that Shard was asked
// about. Asking go-redis costs a slot-map query with a deadline (about 4 µs
// and 4 allocations on a busy 2-core machine, on every L2 call, since the
// breaker needs the shard); remembering costs a CRC16 and an atomic load.
// The zero value is ready; the slots are allocated on first use (128 KiB,
// Cluster clients only).
type shardMap struct {
	slots atomic.Pointer[[slotCount]atomic.Pointer[shardEntry]]
	epoch atomic.Uint64 // bumped by forget: every entry before it is stale
}

type shardEntry struct {
	addr  string
	epoch uint64
	until int64 // unix nanos
}

// forget makes every remembered primary stale.
func (m *shardMap) forget() { m.epoch.Add(1) }

// Shard returns the address of the Cluster primary that serves key, or ""
// on a standalone or Sentinel client (one shard) and when the slot map is
// not known yet. tiered gives each shard its own circuit breaker. Once the
// slot map is loaded it does no I/O, and what it learns of a slot it
// remembers for up to a second (less after a failover the store noticed).
func (s *Store) Shard(key string) string {
	if s.clusterClient == nil {
		return ""
	}
	slots := s.shards.slots.Load()
	if slots == nil {
		slots = new([slotCount]atomic.Pointer[shardEntry])
		if !s.shards.slots.CompareAndSwap(nil, slots) {
			slots = s.shards.slots.Load()
		}
	}
	sl := &slots[slot(key)]
	now := time.Now().UnixNano()
	epoch := s.shards.epoch.Load()
	if e := sl.Load(); e != nil && e.epoch == epoch && now < e.until {
		return e.addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := s.clusterClient.MasterForKey(ctx, key)
	if err != nil {
		return ""
	}
	addr := c.Options().Addr
	ttl := shardTTL
	if last := s.lastReload.Load(); last != 0 && now-last < int64(shardSettle) {
		ttl = shardRecheck
	}
	sl.Store(&shardEntry{addr: addr, epoch: epoch, until: now + int64(ttl)})
	return addr
}
