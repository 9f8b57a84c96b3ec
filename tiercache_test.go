package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"go.uber.org/goleak"
)

// The client types a Group accepts.
var (
	_ tiercache.Client = (*redis.Client)(nil)
	_ tiercache.Client = (*redis.ClusterClient)(nil)
	_ tiercache.Client = redis.UniversalClient(nil)
)

type user struct{ ID, Name string }

type order struct {
	ID    string
	Total int
}

// transport makes fresh clients of one kind of Redis deployment; each
// client is closed by the test's cleanup.
type transport struct {
	name   string
	client func(t *testing.T) tiercache.Client
}

func transports() []transport {
	return []transport{
		{"standalone", func(t *testing.T) tiercache.Client {
			c := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t)})
			t.Cleanup(func() { _ = c.Close() })
			return c
		}},
		{"cluster", func(t *testing.T) tiercache.Client {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
			t.Cleanup(func() { _ = c.Close() })
			return c
		}},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// node is one process of a cluster of services: its own client, Group and
// caches.
type node struct {
	g      *tiercache.Group
	users  *tiered.Cache[user]
	orders *tiered.Cache[order]
}

func newNode(t *testing.T, tr transport, prefix string) node {
	t.Helper()
	g, err := tiercache.NewGroup(tr.client(t),
		tiercache.WithBusOptions(invalidation.WithChannelPrefix(prefix), invalidation.WithHeartbeatInterval(200*time.Millisecond)),
		tiercache.WithDefaults(tiered.WithLocalTTL(time.Minute), tiered.WithRemoteTTL(time.Minute),
			// Generous, so that a loaded machine does not turn a slow L2 read
			// into a degraded load.
			tiered.WithRemoteTimeout(5*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	users, err := tiercache.New[user](g, prefix+"-users",
		tiercache.WithLocal(local.WithMaxEntries(1000)))
	if err != nil {
		t.Fatal(err)
	}
	orders, err := tiercache.New[order](g, prefix+"-orders",
		tiercache.WithTiered(tiered.WithNotFoundTTL(time.Second)),
		tiercache.WithRemote(remote.WithMaxValueBytes(4096)))
	if err != nil {
		t.Fatal(err)
	}
	return node{g: g, users: users, orders: orders}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGroupWorks: two nodes, each one Group with two caches of different
// types on one bus. Values go through L1 and L2; a write on one node
// reaches the L1 of the other through the shared bus, for both caches.
func TestGroupWorks(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			prefix := redistest.Name(t)
			a, b := newNode(t, tr, prefix), newNode(t, tr, prefix)

			var loads atomic.Int64
			loadUser := func(ctx context.Context, id string) (user, error) {
				loads.Add(1)
				return user{ID: id, Name: "v1"}, nil
			}
			if u, err := a.users.GetOrLoad(ctx, "42", loadUser); err != nil || u.Name != "v1" {
				t.Fatalf("a: GetOrLoad = %+v, %v; want v1", u, err)
			}
			// b finds it in L2: the loader does not run again.
			if u, err := b.users.GetOrLoad(ctx, "42", loadUser); err != nil || u.Name != "v1" {
				t.Fatalf("b: GetOrLoad = %+v, %v; want v1", u, err)
			}
			if n := loads.Load(); n != 1 {
				t.Fatalf("loader calls = %d, want 1 (the second node reads L2)", n)
			}
			if st := b.users.Stats(); st.L2Hits != 1 {
				t.Fatalf("b: L2 hits = %d, want 1", st.L2Hits)
			}
			// b's L1 holds it now.
			if u, ok, err := b.users.Get(ctx, "42"); err != nil || !ok || u.Name != "v1" {
				t.Fatalf("b: Get = %+v, %v, %v", u, ok, err)
			}
			l1Before := b.users.Stats().L1Hits
			if f := b.g.Bus().Stats().Flushes; l1Before == 0 && f.Gap+f.Resubscribe+f.Silence+f.Unhealthy+f.Undecodable+f.Remote == 0 {
				// A flush (a busy machine can make the bus renew a
				// subscription or hear a gap) empties L1 by design; without
				// one the read must have been an L1 hit.
				t.Fatal("b: the second read was not an L1 hit, and b's bus flushed nothing")
			}

			if _, err := b.orders.GetOrLoad(ctx, "7", func(context.Context, string) (order, error) {
				return order{ID: "7", Total: 1}, nil
			}); err != nil {
				t.Fatal(err)
			}

			// a writes both caches; b drops its L1 copies (bus) and reads the
			// new values from L2.
			if err := a.users.Set(ctx, "42", user{ID: "42", Name: "v2"}); err != nil {
				t.Fatal(err)
			}
			if err := a.orders.Set(ctx, "7", order{ID: "7", Total: 2}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "b sees the new user", func() bool {
				u, ok, err := b.users.Get(ctx, "42")
				return err == nil && ok && u.Name == "v2"
			})
			eventually(t, "b sees the new order", func() bool {
				o, ok, err := b.orders.Get(ctx, "7")
				return err == nil && ok && o.Total == 2
			})

			// One bus per Group, carrying both caches' messages.
			if a.g.Bus() == nil || a.g.Bus() == b.g.Bus() {
				t.Fatal("each Group must have its own bus")
			}
			// Both keys arrive on b's bus, unless a subscription was renewed
			// meanwhile (a busy machine): a message that fell in the gap is
			// replaced by a flush, which the renewal counts.
			eventually(t, "b's bus to invalidate both caches' keys", func() bool {
				st := b.g.Bus().Stats()
				return st.KeysInvalidated >= 2 || st.Resubscribes > 0
			})
			if got := len(a.g.Caches()); got != 2 {
				t.Fatalf("a has %d caches, want 2", got)
			}
		})
	}
}

// TestCloseStopsEverything: Group.Close closes the caches and the bus; with
// the client closed, no goroutine the Group started is left, and the caches
// and the Group refuse further use.
func TestCloseStopsEverything(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			prefix := redistest.Name(t)
			// A throwaway Group first, so that go-redis's process-wide
			// goroutines (if any) exist before the snapshot.
			warm, err := tiercache.NewGroup(tr.client(t), tiercache.WithBusOptions(invalidation.WithChannelPrefix(prefix+"-warm")))
			if err != nil {
				t.Fatal(err)
			}
			_ = warm.Close()
			ignore := goleak.IgnoreCurrent()

			var client tiercache.Client
			switch tr.name {
			case "standalone":
				client = redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t)})
			default:
				client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
			}
			g, err := tiercache.NewGroup(client, tiercache.WithBusOptions(invalidation.WithChannelPrefix(prefix), invalidation.WithHeartbeatInterval(50*time.Millisecond)))
			if err != nil {
				t.Fatal(err)
			}
			users, err := tiercache.New[user](g, prefix+"-users")
			if err != nil {
				t.Fatal(err)
			}
			orders, err := tiercache.New[order](g, prefix+"-orders", tiercache.WithTiered(tiered.WithEarlyRefresh(1)))
			if err != nil {
				t.Fatal(err)
			}
			// A load still running when Close is called: Close cancels it and
			// waits for it.
			started := make(chan struct{})
			slowDone := make(chan error, 1)
			go func() {
				_, err := users.GetOrLoad(ctx, "slow", func(ctx context.Context, _ string) (user, error) {
					close(started)
					<-ctx.Done()
					return user{}, ctx.Err()
				})
				slowDone <- err
			}()
			<-started
			if _, err := orders.GetOrLoad(ctx, "1", func(context.Context, string) (order, error) { return order{ID: "1"}, nil }); err != nil {
				t.Fatal(err)
			}
			if err := users.Delete(ctx, "x"); err != nil {
				t.Fatal(err)
			}

			if err := g.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := <-slowDone; err == nil {
				t.Fatal("the load in flight at Close succeeded; want its cancellation")
			}
			if err := g.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, _, err := users.Get(ctx, "1"); !errors.Is(err, tiered.ErrClosed) {
				t.Fatalf("Get after Close: %v, want tiered.ErrClosed", err)
			}
			if _, err := tiercache.New[user](g, prefix+"-late"); !errors.Is(err, tiercache.ErrClosed) {
				t.Fatalf("New after Close: %v, want ErrClosed", err)
			}
			if got := len(g.Caches()); got != 0 {
				t.Fatalf("closed group lists %d caches", got)
			}
			// The client is the caller's: still open.
			if err := client.(redis.UniversalClient).Ping(ctx).Err(); err != nil {
				t.Fatalf("the Group closed the client: %v", err)
			}
			_ = client.(interface{ Close() error }).Close()
			goleak.VerifyNone(t, ignore)
		})
	}
}

// TestCachesLeavesOutClosed: a cache closed by its own Close leaves the
// Group's list; the others stay.
func TestCachesLeavesOutClosed(t *testing.T) {
	tr := transports()[0]
	n := newNode(t, tr, redistest.Name(t))
	if err := n.users.Close(); err != nil {
		t.Fatal(err)
	}
	got := n.g.Caches()
	if len(got) != 1 || got[0].Status().Name != n.orders.Name() {
		var names []string
		for _, c := range got {
			names = append(names, c.Status().Name)
		}
		t.Fatalf("Caches() = %v, want [%s]", names, n.orders.Name())
	}
}

func TestBadArguments(t *testing.T) {
	rdb := redistest.Standalone(t)
	if _, err := tiercache.NewGroup(nil); !errors.Is(err, tiercache.ErrInvalidOption) {
		t.Errorf("nil client: %v", err)
	}
	if _, err := tiercache.NewGroup((*redis.Client)(nil)); !errors.Is(err, tiercache.ErrInvalidOption) {
		t.Errorf("typed nil client: %v", err)
	}
	if _, err := tiercache.NewGroup(rdb, nil); !errors.Is(err, tiercache.ErrInvalidOption) {
		t.Errorf("nil group option: %v", err)
	}
	if _, err := tiercache.NewGroup(rdb, tiercache.WithBusOptions(invalidation.WithShards(-1))); !errors.Is(err, invalidation.ErrInvalidOption) {
		t.Errorf("bad bus option: %v", err)
	}
	if _, err := tiercache.New[user](nil, "users"); !errors.Is(err, tiercache.ErrInvalidOption) {
		t.Errorf("nil group: %v", err)
	}

	g, err := tiercache.NewGroup(rdb, tiercache.WithoutInvalidation(), tiercache.WithDefaults(tiered.WithRemoteTimeout(5*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	if g.Bus() != nil {
		t.Error("WithoutInvalidation: the Group has a bus")
	}
	name := redistest.Name(t)
	for _, tc := range []struct {
		name string
		opts []tiercache.Option
		want error
	}{
		{"nil option", []tiercache.Option{nil}, tiercache.ErrInvalidOption},
		{"local cost of another type", []tiercache.Option{tiercache.WithLocal(local.WithMaxCost(100), local.WithCost(func(order) int64 { return 1 }))}, local.ErrInvalidOption},
		{"WithLocal and WithoutLocal", []tiercache.Option{tiercache.WithLocal(), tiercache.WithoutLocal()}, tiercache.ErrInvalidOption},
		{"WithoutLocal and WithLocal", []tiercache.Option{tiercache.WithoutLocal(), tiercache.WithLocal()}, tiercache.ErrInvalidOption},
		{"bad local option", []tiercache.Option{tiercache.WithLocal(local.WithMaxEntries(-1))}, local.ErrInvalidOption},
		{"bad remote option", []tiercache.Option{tiercache.WithRemote(remote.WithMaxKeyBytes(0))}, remote.ErrInvalidOption},
		{"bad tiered option", []tiercache.Option{tiercache.WithTiered(tiered.WithJitter(2))}, tiered.ErrInvalidOption},
		{"bad name", []tiercache.Option{}, tiered.ErrInvalidOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := name
			if tc.name == "bad name" {
				n = "bad\x00name"
			}
			c, err := tiercache.New[user](g, n, tc.opts...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("New = %v, %v; want %v", c, err, tc.want)
			}
		})
	}
	if got := len(g.Caches()); got != 0 {
		t.Fatalf("failed News left %d caches in the Group", got)
	}

	// L2-only works.
	c, err := tiercache.New[user](g, name+"-l2only", tiercache.WithoutLocal())
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.L1.Present {
		t.Fatal("WithoutLocal: the cache has an L1")
	}
	ctx := ctxT(t)
	for i := range 2 {
		if _, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (user, error) { return user{ID: "k"}, nil }); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if st := c.Stats(); st.L2Hits != 1 || st.L1Hits != 0 {
		t.Fatalf("L2-only stats: %+v", st)
	}
}

// ExampleNew shows the one-call setup; it needs a Redis, so it has no
// Output and only compiles.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	g, err := tiercache.NewGroup(rdb)
	if err != nil {
		panic(err)
	}
	defer g.Close() // the caches, then the bus; before rdb.Close

	users, err := tiercache.New[user](g, "users",
		tiercache.WithTiered(tiered.WithLocalTTL(10*time.Second), tiered.WithRemoteTTL(time.Minute)))
	if err != nil {
		panic(err)
	}
	u, err := users.GetOrLoad(context.Background(), "42", func(ctx context.Context, id string) (user, error) {
		return user{ID: id, Name: strings.ToUpper("ada")}, nil
	})
	fmt.Println(u.Name, err)
}

// Issue 20 observation 4: tiercache.New refuses an ACL user that may not
// run scripts, naming the commands, at start-up; the Group (its bus only
// needs pub/sub) starts.
func TestNewRefusesUserWithoutScripting(t *testing.T) {
	admin := redistest.Standalone(t)
	ctx := context.Background()
	name := redistest.Name(t)
	userName := "acl-" + name
	prefix := "inv-" + name
	if err := admin.Do(ctx, "ACL", "SETUSER", userName, "reset", "on", ">pw", "resetkeys", "~"+name+":*", "resetchannels", "&"+prefix+":*",
		"-@all", "+@read", "+@write", "+@pubsub", "+@connection", "-@dangerous", "+time").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", userName) })
	rdb := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t), Username: userName, Password: "pw"})
	t.Cleanup(func() { rdb.Close() })
	g, err := tiercache.NewGroup(rdb, tiercache.WithBusOptions(invalidation.WithChannelPrefix(prefix)))
	if err != nil {
		t.Fatalf("NewGroup as a user with pub/sub: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	c, err := tiercache.New[user](g, name)
	if err == nil {
		c.Close()
		t.Fatal("tiercache.New as a user without scripting succeeded; want an error naming EVAL, EVALSHA")
	}
	if !errors.Is(err, remote.ErrPermission) || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), "EVAL, EVALSHA") {
		t.Fatalf("tiercache.New = %v; want ErrPermission saying NOPERM and naming EVAL, EVALSHA", err)
	}
}
