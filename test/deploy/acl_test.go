package deploy_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// aclRule is the least-privilege rule of docs/degradation.md (ACL) for
// a cache named name whose bus uses channel prefix prefix, followed by
// extra.
func aclRule(name, prefix string, extra ...string) []any {
	rule := []any{"resetkeys", "~" + name + ":*", "resetchannels", "&" + prefix + ":*",
		"-@all", "+@read", "+@write", "+@scripting", "+@pubsub", "+@connection", "-@dangerous", "+time"}
	for _, e := range extra {
		rule = append(rule, e)
	}
	return rule
}

// setUser runs ACL SETUSER user on every node of pc: ACL rules are per
// server, neither replicated nor spread by the Cluster.
func setUser(t *testing.T, pc *redistest.PrivateCluster, user string, rule []any) {
	t.Helper()
	for _, addr := range pc.Addrs() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		err := c.Do(context.Background(), append([]any{"ACL", "SETUSER", user, "reset", "on", ">pw"}, rule...)...).Err()
		_ = c.Close()
		if err != nil {
			t.Fatalf("ACL SETUSER on %s: %v", addr, err)
		}
	}
}

// errorLog collects the errors a cache hands its error handler.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) handle(_ context.Context, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) permissionErrors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []error
	for _, err := range l.errs {
		if strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "permission") {
			out = append(out, err)
		}
	}
	return out
}

// TestLeastPrivilegeUserOnCluster: the ACL rule of docs/degradation.md plus the Cluster
// addition +cluster|slots (go-redis reads the slot map with CLUSTER SLOTS),
// set on every node of a private Cluster (2 primaries, 1 replica): reads,
// leases, writes, batches, early refresh and the sharded bus all work as
// that user. Without the addition the client cannot learn the slot map,
// and every call fails.
func TestLeastPrivilegeUserOnCluster(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	pc := redistest.NewCluster(t, 2, 1)
	setup := newSetup(t)
	prefix := "deploy-" + setup.name
	user := "acl-" + setup.name
	setUser(t, pc, user, aclRule(setup.name, prefix, "+cluster|slots"))
	log := &errorLog{}
	setup.opts = append(setup.opts, tiered.WithErrorHandler(log.handle))
	newClient := func() *redis.ClusterClient {
		// Not pc.Client: its readiness check runs CLUSTER INFO, which the
		// user may not (NewCluster already waited for the Cluster).
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: pc.Addrs(), Username: user, Password: "pw"})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, b := setup.node(t, newClient()), setup.node(t, newClient())
	if !a.g.Bus().Status().Sharded {
		t.Fatal("the bus does not use sharded pub/sub on the Cluster")
	}
	exercise(t, a, b)

	// Batches: one command per slot, keys on both primaries.
	items := map[string]string{}
	for i := range 20 {
		items[key(100+i)] = "batch"
	}
	if err := a.cache.SetMany(ctx, items); err != nil {
		t.Fatalf("SetMany as the ACL user: %v", err)
	}
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	got, err := b.cache.GetOrLoadMany(ctx, keys, func(context.Context, []string) (map[string]string, error) {
		return nil, errors.New("every key is in L2: no load")
	})
	if err != nil || len(got) != len(keys) {
		t.Fatalf("GetOrLoadMany as the ACL user: %d of %d, %v", len(got), len(keys), err)
	}
	if err := a.cache.Delete(ctx, keys...); err != nil {
		t.Fatalf("Delete of %d keys as the ACL user: %v", len(keys), err)
	}
	// Early refresh, on a third node whose every L2 hit refreshes: its
	// guard key lies under name:, so it is allowed.
	refreshing := setup
	refreshing.opts = append(append([]tiered.Option(nil), setup.opts...), tiered.WithEarlyRefresh(1e6))
	r := refreshing.node(t, newClient())
	slow := func(_ context.Context, key string) (string, error) {
		time.Sleep(5 * time.Millisecond) // the query's duration (makes early refresh fire)
		return key + "=refreshed", nil
	}
	eventually(t, 10*time.Second, "an early refresh", func() bool {
		for i := range 10 {
			if _, err := r.cache.GetOrLoad(ctx, key(200+i), slow); err != nil {
				t.Fatalf("GetOrLoad as the ACL user: %v", err)
			}
		}
		return r.cache.Stats().RefreshesStarted > 0
	})
	if errs := log.permissionErrors(); len(errs) > 0 {
		t.Fatalf("permission errors with the documented rule: %v", errs)
	}
	for _, n := range []*node{a, b, r} {
		if st := n.cache.Stats(); st.RefreshErrors != 0 || st.BreakerOpenings != 0 || st.L2Errors != 0 {
			t.Fatalf("stats %+v", st)
		}
	}

	// Without +cluster|slots the client never learns the slot map.
	bare := "bare-" + setup.name
	setUser(t, pc, bare, aclRule(setup.name, prefix))
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: pc.Addrs(), Username: bare, Password: "pw"})
	defer c.Close()
	err = c.Set(ctx, setup.name+":x", "1", time.Minute).Err()
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("SET as a user without +cluster|slots: %v, want NOPERM", err)
	}
	_, err = invalidation.New(c, invalidation.WithChannelPrefix(prefix))
	if !errors.Is(err, invalidation.ErrRedisRefused) || !strings.Contains(err.Error(), "grant +cluster|slots") {
		t.Fatalf("invalidation.New as a user without +cluster|slots: %v; want ErrRedisRefused saying to grant +cluster|slots", err)
	}
}
