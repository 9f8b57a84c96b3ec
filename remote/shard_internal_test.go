package remote

import (
	"context"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestShardRemembersAndForgets checks Shard's memory of slot primaries: a
// remembered primary is answered without asking go-redis (so a planted
// wrong one shows), and is asked again once it is older than shardTTL or
// after a reload the store asked for (a failover it noticed).
func TestShardRemembersAndForgets(t *testing.T) {
	cc := redistest.Cluster(t)
	s, err := New(cc)
	if err != nil {
		t.Fatal(err)
	}
	key := redistest.Name(t) + ":k"
	m, err := cc.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	want := m.Options().Addr
	if got := s.Shard(key); got != want {
		t.Fatalf("Shard = %q, want %q", got, want)
	}
	slots := s.shards.slots.Load()
	plant := func(until time.Time) {
		slots[slot(key)].Store(&shardEntry{addr: "planted", epoch: s.shards.epoch.Load(), until: until.UnixNano()})
	}
	plant(time.Now().Add(time.Hour))
	if got := s.Shard(key); got != "planted" {
		t.Fatalf("Shard = %q, want the remembered %q", got, "planted")
	}
	if n := testing.AllocsPerRun(100, func() { s.Shard(key) }); n != 0 {
		t.Errorf("a remembered Shard allocates %v times, want 0", n)
	}
	s.maybeReload()
	if got := s.Shard(key); got != want {
		t.Fatalf("after a reload Shard = %q, want %q asked again", got, want)
	}
	// While go-redis may still be loading the new map, an answer is kept
	// for shardRecheck only.
	if e := slots[slot(key)].Load(); time.Until(time.Unix(0, e.until)) > shardRecheck {
		t.Fatalf("an answer right after a reload is kept for %v, want at most %v", time.Until(time.Unix(0, e.until)), shardRecheck)
	}
	plant(time.Now().Add(-time.Millisecond))
	if got := s.Shard(key); got != want {
		t.Fatalf("past shardTTL Shard = %q, want %q asked again", got, want)
	}
}
