package tiered_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// ACLRule returns the least-privilege ACL rule docs/degradation.md documents for a
// cache named name whose bus uses channel prefix prefix.
func aclRule(name, prefix string) []any {
	return []any{"resetkeys", "~" + name + ":*", "resetchannels", "&" + prefix + ":*",
		"-@all", "+@read", "+@write", "+@scripting", "+@pubsub", "+@connection", "-@dangerous", "+time"}
}

// Issue 9 observations 5 (ACL part) and 12, and the ACL rule of
// docs/degradation.md: the whole cache (reads, writes, leases, early refresh, the bus)
// works as a user holding only the documented ACL rule.
func TestLeastPrivilegeUser(t *testing.T) {
	admin := redistest.Standalone(t)
	ctx := context.Background()
	name := redistest.Name(t)
	prefix := "inv-" + name
	aclUser := "acl-" + name
	args := append([]any{"ACL", "SETUSER", aclUser, "reset", "on", ">pw"}, aclRule(name, prefix)...)
	if err := admin.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", aclUser) })

	type node struct {
		c      *tiered.Cache[user]
		errors *errorLog
	}
	var nodes []node
	for range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t), Username: aclUser, Password: "pw"})
		t.Cleanup(func() { rdb.Close() })
		bus, err := invalidation.New(rdb, invalidation.WithChannelPrefix(prefix))
		if err != nil {
			t.Fatalf("invalidation.New as the ACL user: %v", err)
		}
		t.Cleanup(func() { bus.Close() })
		l2, err := remote.New(rdb)
		if err != nil {
			t.Fatal(err)
		}
		l1, err := local.New[user]()
		if err != nil {
			t.Fatal(err)
		}
		log := &errorLog{}
		c, err := tiered.New[user](name, l1, l2, tiered.WithInvalidation(bus), tiered.WithErrorHandler(log.handle),
			tiered.WithRemoteTTL(2*time.Second), tiered.WithEarlyRefresh(1e6), tiered.WithRemoteTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		nodes = append(nodes, node{c, log})
	}
	a, b := nodes[0], nodes[1]
	load := func(ctx context.Context, key string) (user, error) {
		time.Sleep(5 * time.Millisecond) // the query's duration (makes early refresh fire)
		return user{ID: key}, nil
	}
	// Reads under leases, from both nodes.
	for i := range 20 {
		key := fmt.Sprint("k", i)
		for _, n := range nodes {
			if u, err := n.c.GetOrLoad(ctx, key, load); err != nil || u.ID != key {
				t.Fatalf("GetOrLoad(%q) = %+v, %v", key, u, err)
			}
		}
	}
	// Writes, published on the bus: B drops its copy.
	if _, err := b.c.GetOrLoad(ctx, "w", load); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Set(ctx, "w", user{ID: "w", Name: "new"}); err != nil {
		t.Fatalf("Set as the ACL user: %v", err)
	}
	eventually(t, 5*time.Second, "B never saw A's Set through the bus", func() bool {
		u, ok, err := b.c.Get(ctx, "w")
		return err == nil && ok && u.Name == "new"
	})
	if err := a.c.Delete(ctx, "w"); err != nil {
		t.Fatalf("Delete as the ACL user: %v", err)
	}
	// Early refresh: the guard key lies under name:, so it is allowed.
	eventually(t, 10*time.Second, "no early refresh ran", func() bool {
		for i := range 20 {
			a.c.GetOrLoad(ctx, fmt.Sprint("k", i), load)
		}
		return a.c.Stats().RefreshesStarted > 0
	})
	for _, n := range nodes {
		for _, err := range n.errors.all() {
			if strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "permission") {
				t.Fatalf("a permission error with the documented ACL rule: %v", err)
			}
		}
		if st := n.c.Stats(); st.RefreshErrors != 0 || st.BreakerOpenings != 0 {
			t.Fatalf("stats %+v", st)
		}
	}
}
