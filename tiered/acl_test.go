package tiered_test

import (
	"context"
	"errors"
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

// aclUser creates an ACL user on the shared standalone server with the
// documented rule for a cache named name, followed by extra rules, and
// deletes it when the test ends. It returns a client logged in as the user.
func aclUser(t *testing.T, name string, extra ...any) (admin *redis.Client, userName string, rdb *redis.Client) {
	t.Helper()
	admin = redistest.Standalone(t)
	ctx := context.Background()
	userName = "acl-" + name
	args := append([]any{"ACL", "SETUSER", userName, "reset", "on", ">pw"}, aclRule(name, "inv-"+name)...)
	if err := admin.Do(ctx, append(args, extra...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", userName) })
	rdb = redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t), Username: userName, Password: "pw"})
	t.Cleanup(func() { rdb.Close() })
	return admin, userName, rdb
}

// Issue 20 observation 4 (start-up): a user that may not run scripts is
// refused at New, with an error naming the commands it lacks, instead of
// stalling reads later.
func TestNoScriptingUserFailsAtNew(t *testing.T) {
	name := redistest.Name(t)
	_, _, rdb := aclUser(t, name, "-@scripting")
	s, err := remote.New(rdb, remote.WithProbeKey(name+":\x00probe"))
	if err == nil {
		t.Fatalf("remote.New as a user without scripting = %v, nil; want an error", s)
	}
	if !errors.Is(err, remote.ErrPermission) {
		t.Fatalf("remote.New error %q does not match ErrPermission", err)
	}
	msg := err.Error()
	t.Logf("remote.New: %v", err)
	for _, want := range []string{"NOPERM", "EVAL", "EVALSHA"} {
		if !strings.Contains(msg, want) {
			t.Errorf("remote.New error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "credentials") {
		t.Errorf("remote.New error %q speaks of credentials; the password was right", msg)
	}
	// With the documented rule, New succeeds; only with a probe key under
	// the cache's prefix can the probe read SET's options.
	_, _, full := aclUser(t, name+"-full")
	for _, tt := range []struct {
		opts []remote.Option
		want bool
	}{{nil, false}, {[]remote.Option{remote.WithProbeKey(name + "-full:\x00probe")}, true}} {
		s, err := remote.New(full, tt.opts...)
		if err != nil {
			t.Fatalf("remote.New as a user with the documented rule: %v", err)
		}
		if c := s.Capabilities(); !c.Probed || c.KeyAllowed != tt.want || c.SetNXGet != tt.want {
			t.Errorf("Capabilities() with options %v = %+v; want probed, KeyAllowed and SetNXGet %v", tt.opts, c, tt.want)
		}
	}
	// Without the probe key: key patterns cannot be checked, commands still are.
	if _, err := remote.New(rdb); !errors.Is(err, remote.ErrPermission) || !strings.Contains(err.Error(), "EVALSHA") {
		t.Fatalf("remote.New without a probe key = %v; want ErrPermission naming EVALSHA", err)
	}
}

// Issue 20 observation 4 (run time): scripting revoked after New. The
// holder's refused fill is reported at once as NOPERM naming the command
// (not as "credentials"), and it releases its lease, so a reader on
// another node waiting on that lease is not held until LeaseTTL (3 s; it
// was 2.95 s).
func TestNoPermAtRunTimeReleasesLease(t *testing.T) {
	ctx := context.Background()
	name := redistest.Name(t)
	admin, userName, rdb := aclUser(t, name)
	mk := func() (*tiered.Cache[user], *errorLog) {
		l2, err := remote.New(rdb, remote.WithProbeKey(name+":\x00probe"))
		if err != nil {
			t.Fatalf("remote.New as a user with the documented rule: %v", err)
		}
		l1, err := local.New[user]()
		if err != nil {
			t.Fatal(err)
		}
		log := &errorLog{}
		c, err := tiered.New[user](name, l1, l2, tiered.WithErrorHandler(log.handle), tiered.WithRemoteTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, log
	}
	a, aLog := mk()
	b, bLog := mk()
	if err := admin.Do(ctx, "ACL", "SETUSER", userName, "-@scripting").Err(); err != nil {
		t.Fatal(err)
	}

	loading, release := make(chan struct{}), make(chan struct{})
	loadA := func(ctx context.Context, key string) (user, error) {
		close(loading)
		<-release
		return user{ID: key}, nil
	}
	loadB := func(ctx context.Context, key string) (user, error) { return user{ID: key}, nil }
	start := time.Now()
	aDone := make(chan error, 1)
	go func() { _, err := a.GetOrLoad(ctx, "k", loadA); aDone <- err }()
	<-loading // A holds the lease
	bDone := make(chan error, 1)
	bStart := time.Now()
	go func() { _, err := b.GetOrLoad(ctx, "k", loadB); bDone <- err }()
	// B is waiting on A's lease: it polls L2 and sees the lease.
	eventually(t, 5*time.Second, "B never waited on A's lease", func() bool { return b.Stats().LeaseWaits > 0 })
	close(release)
	if err := <-aDone; err != nil {
		t.Fatalf("A's GetOrLoad: %v", err)
	}
	var firstErr time.Duration
	eventually(t, 5*time.Second, "A's handler never saw the refused fill", func() bool {
		firstErr = time.Since(start)
		return len(aLog.all()) > 0
	})
	if err := <-bDone; err != nil {
		t.Fatalf("B's GetOrLoad: %v", err)
	}
	bTook := time.Since(bStart)
	t.Logf("first error %v after the read began; B's read (waiting on A's lease) took %v", firstErr, bTook)
	first := aLog.all()[0]
	msg := first.Error()
	if !errors.Is(first, remote.ErrPermission) || !strings.Contains(msg, "NOPERM") || !strings.Contains(strings.ToLower(msg), "evalsha") ||
		strings.Contains(msg, "credentials") {
		t.Fatalf("first error = %q; want ErrPermission saying NOPERM and naming evalsha, not credentials", msg)
	}
	for _, err := range aLog.all() {
		if strings.Contains(err.Error(), "lease release") {
			t.Errorf("A could not release its lease: %v", err)
		}
	}
	// The lease is gone as soon as A's release ran: B never waits for its TTL.
	if bTook > time.Second {
		t.Fatalf("B's read took %v waiting on a lease whose fill was refused; want < 1s (LeaseTTL %v)", bTook, tiered.DefaultLeaseTTL)
	}
	if errs := bLog.all(); len(errs) == 0 {
		t.Errorf("B's refused fill was not reported")
	}
}
