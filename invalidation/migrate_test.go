package invalidation

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// node is a primary of the test cluster, from CLUSTER NODES.
type node struct {
	id, addr string
	slots    [][2]int
}

func (n node) owns(slot int) bool {
	for _, r := range n.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// primaries reads the primaries of the cluster from its first node.
func primaries(ctx context.Context, t *testing.T) []node {
	t.Helper()
	addr := redistest.ClusterAddrs(t)[0]
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	out, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER NODES: %v", err)
	}
	var nodes []node
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") {
			continue
		}
		n := node{id: f[0], addr: strings.SplitN(f[1], "@", 2)[0]}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a migration in progress
			}
			lo, hi, _ := strings.Cut(s, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if hi != "" {
				b, _ = strconv.Atoi(hi)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// migrateSlot moves slot from one primary to another with the standard
// protocol (IMPORTING, MIGRATING, MIGRATE of any keys, then NODE on every
// primary, target and source first), so that keys other tests keep in the
// slot move with it.
func migrateSlot(ctx context.Context, slot int, from, to node, all []node) error {
	clients := make(map[string]*redis.Client)
	cl := func(n node) *redis.Client {
		if c, ok := clients[n.id]; ok {
			return c
		}
		c := redis.NewClient(&redis.Options{Addr: n.addr})
		clients[n.id] = c
		return c
	}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	if err := cl(to).Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", from.id).Err(); err != nil {
		return fmt.Errorf("IMPORTING on %s: %w", to.addr, err)
	}
	if err := cl(from).Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.id).Err(); err != nil {
		return fmt.Errorf("MIGRATING on %s: %w", from.addr, err)
	}
	host, port, _ := net.SplitHostPort(to.addr)
	for {
		keys, err := cl(from).ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			return fmt.Errorf("GETKEYSINSLOT: %w", err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := cl(from).Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("MIGRATE: %w", err)
		}
	}
	order := []node{to, from}
	for _, n := range all {
		if n.id != to.id && n.id != from.id {
			order = append(order, n)
		}
	}
	for _, n := range order {
		if err := cl(n).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", to.id).Err(); err != nil {
			return fmt.Errorf("SETSLOT NODE on %s: %w", n.addr, err)
		}
	}
	return nil
}

// shardSubscribers returns the number of subscribers of shard channel ch on
// the node at addr.
func shardSubscribers(ctx context.Context, addr, ch string) (int64, error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	m, err := c.PubSubShardNumSub(ctx, ch).Result()
	return m[ch], err
}

// TestSlotMigrationResubscribes moves the slot of one shard channel to
// another primary and back. Redis 7 ends the subscriptions of the channel on
// the old owner (sunsubscribe); the buses subscribe again on the new owner,
// flush, and keep receiving.
func TestSlotMigrationResubscribes(t *testing.T) {
	ctx := ctxT(t)
	// A prefix of our own: no other bus has a channel on the slot we move.
	opts := []Option{WithChannelPrefix(uniqueName(t))}
	a := newBus(t, clusterClient(t), opts...)
	b := newBus(t, clusterClient(t), append(opts, WithLogger(testLogger(t)))...)
	r := newRecorder()
	r.subscribe(t, b, "users")

	ch := b.Channels()[0]
	s := int(slot(ch))
	var onCh []string // keys that travel on channel 0
	for i := 0; len(onCh) < 3; i++ {
		if k := "k" + strconv.Itoa(i); shardOf("users", k, len(b.Channels())) == 0 {
			onCh = append(onCh, k)
		}
	}
	mustPublish(t, ctx, a, "users", onCh[0])
	eventually(t, 5*time.Second, "a key before the move", func() bool { return r.has(onCh[0]) })

	nodes := primaries(ctx, t)
	var home, away node
	for _, n := range nodes {
		if n.owns(s) {
			home = n
		}
	}
	for _, n := range nodes {
		if n.id != home.id {
			away = n
			break
		}
	}
	if home.id == "" || away.id == "" {
		t.Fatalf("slot %d: no owner or no other primary among %+v", s, nodes)
	}

	move := func(from, to node, key string) {
		t.Helper()
		before := b.Stats()
		flushes := r.flushCount()
		if err := migrateSlot(ctx, s, from, to, nodes); err != nil {
			t.Fatalf("moving slot %d from %s to %s: %v", s, from.addr, to.addr, err)
		}
		t.Logf("slot %d of %s moved from %s to %s", s, ch, from.addr, to.addr)
		eventually(t, 10*time.Second, "B to subscribe again and flush", func() bool {
			st := b.Stats()
			return st.Resubscribes > before.Resubscribes && st.Flushes.Resubscribe > before.Flushes.Resubscribe &&
				r.flushCount() > flushes
		})
		eventually(t, 10*time.Second, "both buses subscribed on the new owner", func() bool {
			n, err := shardSubscribers(ctx, to.addr, ch)
			return err == nil && n == 2
		})
		mustPublish(t, ctx, a, "users", key)
		eventually(t, 5*time.Second, "a key after the move", func() bool { return r.has(key) })
		if st := b.Stats(); st.Flushes.Silence != before.Flushes.Silence {
			t.Errorf("the move was found by silence, not by the server's sunsubscribe")
		}
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			// Put the shared cluster back as it was, whatever happened.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, n := range nodes {
				c := redis.NewClient(&redis.Options{Addr: n.addr})
				_ = c.Do(ctx, "CLUSTER", "SETSLOT", s, "STABLE").Err() // clear a half-done move
				_ = c.Close()
			}
			for _, n := range primaries(ctx, t) {
				if n.owns(s) && n.id != home.id {
					if err := migrateSlot(ctx, s, n, home, nodes); err != nil {
						t.Errorf("restoring slot %d: %v", s, err)
					}
				}
			}
		}
	})
	move(home, away, onCh[1])
	move(away, home, onCh[2])
	restored = true
}
