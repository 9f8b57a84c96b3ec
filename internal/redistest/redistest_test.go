package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,48}-[0-9a-f]{12}$`)

func TestName(t *testing.T) {
	tests := []struct {
		sub        string
		wantPrefix string
	}{
		{"plain", "TestName_plain-"},
		{"with space", "TestName_with_space-"},
		{"slot{tag}:colon/nested", "TestName_slot_tag__colon_nested-"},
		{strings.Repeat("x", 100), "TestName_" + strings.Repeat("x", 48-len("TestName_"))},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			a, b := Name(t), Name(t)
			for _, got := range []string{a, b} {
				if !nameRE.MatchString(got) {
					t.Errorf("Name() = %q, want it to match %s", got, nameRE)
				}
				if !strings.HasPrefix(got, tt.wantPrefix) {
					t.Errorf("Name() = %q, want prefix %q", got, tt.wantPrefix)
				}
			}
			if a == b {
				t.Errorf("two calls to Name() both returned %q, want distinct names", a)
			}
		})
	}
}

func TestStandalone(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := Standalone(t)
	key := Name(t) + ":k"
	if err := c.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Errorf("GET = %q, %v; want \"v\", nil", got, err)
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		t.Fatalf("INFO: %v", err)
	}
	if got := infoField(info, "redis_mode"); got != "standalone" {
		t.Errorf("redis_mode = %q, want standalone", got)
	}
	// Tests use DEBUG SLEEP for slow-server faults.
	if err := c.Do(ctx, "DEBUG", "SLEEP", "0").Err(); err != nil {
		t.Errorf("DEBUG SLEEP 0: %v (want DEBUG enabled from loopback)", err)
	}
}

func TestStandaloneAddr(t *testing.T) {
	t.Parallel()
	addr := StandaloneAddr(t)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		t.Fatalf("StandaloneAddr() = %q: %v", addr, err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if err := c.Ping(ctxT(t)).Err(); err != nil {
		t.Errorf("PING %s: %v", addr, err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := Cluster(t)
	ns := Name(t)

	// Keys spread over every primary.
	const n = 100
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("%s:%d", ns, i), i, time.Minute).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
	}
	for i := range n {
		got, err := c.Get(ctx, fmt.Sprintf("%s:%d", ns, i)).Int()
		if err != nil || got != i {
			t.Fatalf("GET %s:%d = %d, %v; want %d, nil", ns, i, got, err, i)
		}
	}

	var mu sync.Mutex
	count := func(each func(context.Context, func(context.Context, *redis.Client) error) error) int {
		t.Helper()
		k := 0
		err := each(ctx, func(ctx context.Context, c *redis.Client) error {
			// DEBUG must work on every node (slow-node faults).
			if err := c.Do(ctx, "DEBUG", "SLEEP", "0").Err(); err != nil {
				return fmt.Errorf("DEBUG SLEEP 0 on %s: %w", c.Options().Addr, err)
			}
			mu.Lock()
			k++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if got := count(c.ForEachMaster); got != 3 {
		t.Errorf("primaries = %d, want 3", got)
	}
	if got := count(c.ForEachSlave); got != 3 {
		t.Errorf("replicas = %d, want 3", got)
	}

	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SHARDS: %v", err)
	}
	covered := int64(0)
	for _, sh := range shards {
		for _, s := range sh.Slots {
			covered += s.End - s.Start + 1
		}
		if len(sh.Nodes) != 2 {
			t.Errorf("shard with slots %v has %d nodes, want a primary and a replica", sh.Slots, len(sh.Nodes))
		}
	}
	if covered != 16384 {
		t.Errorf("slots covered = %d, want 16384", covered)
	}
}

func TestClusterAddrs(t *testing.T) {
	t.Parallel()
	addrs := ClusterAddrs(t)
	if len(addrs) != 6 {
		t.Errorf("ClusterAddrs() = %q, want 6 nodes", addrs)
	}
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			t.Errorf("ClusterAddrs(): %q: %v", a, err)
		}
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	if err := c.Set(ctxT(t), Name(t), "v", time.Minute).Err(); err != nil {
		t.Errorf("SET through a client built from ClusterAddrs(): %v", err)
	}
}

func TestServerStopStart(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := NewServer(t)
	addr := s.Addr()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if err := c.Do(ctx, "DEBUG", "SLEEP", "0").Err(); err != nil {
		t.Errorf("DEBUG SLEEP 0: %v", err)
	}

	s.Stop(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Errorf("PING while stopped = nil error, want an error")
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Errorf("dial %s after Stop succeeded, want the port closed", addr)
	}
	s.Stop(t) // stopping twice is fine

	s.Start(t)
	if got := s.Addr(); got != addr {
		t.Errorf("Addr() after restart = %q, want %q", got, addr)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	// No persistence: a restarted server is empty.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k after restart: err = %v, want redis.Nil", err)
	}
	s.Start(t) // starting a running server is fine
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after second Start: %v", err)
	}
}

func TestServerExtraArgs(t *testing.T) {
	t.Parallel()
	s := NewServer(t, "--maxmemory", "2mb", "--save", "")
	got, err := s.Client(t).ConfigGet(ctxT(t), "maxmemory").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if want := strconv.Itoa(2 << 20); got["maxmemory"] != want {
		t.Errorf("maxmemory = %q, want %q", got["maxmemory"], want)
	}
}

func TestServersAreIndependent(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	a, b := NewServer(t), NewServer(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers share %s", a.Addr())
	}
	ca, cb := a.Client(t), b.Client(t)
	a.Stop(t)
	if err := cb.Ping(ctx).Err(); err != nil {
		t.Errorf("PING b while a is stopped: %v", err)
	}
	a.Start(t)
	if err := ca.Ping(ctx).Err(); err != nil {
		t.Errorf("PING a after restart: %v", err)
	}
}

// fakeTB records Fatal and Skip instead of ending the real test.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Fatal(fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) FailNow() { f.Fatal("FailNow") }
func (f *fakeTB) Skipf(format string, args ...any) {
	f.Skip()
}
func (f *fakeTB) Skip(args ...any) { f.SkipNow() }
func (f *fakeTB) SkipNow() {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn with a fakeTB on its own goroutine, as the testing package
// would, and returns what fn reported.
func run(t *testing.T, fn func(testing.TB)) (fatal string, skipped bool) {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal, f.skipped
}

var helpers = []struct {
	name string
	env  string
	fn   func(testing.TB)
}{
	{"Standalone", EnvStandalone, func(t testing.TB) { Standalone(t) }},
	{"StandaloneAddr", EnvStandalone, func(t testing.TB) { StandaloneAddr(t) }},
	{"Cluster", EnvCluster, func(t testing.TB) { Cluster(t) }},
	{"ClusterAddrs", EnvCluster, func(t testing.TB) { ClusterAddrs(t) }},
}

// checkFailure checks that a helper failed with msg naming want and Hint,
// or skipped under -short.
func checkFailure(t *testing.T, fatal string, skipped bool, want ...string) {
	t.Helper()
	if testing.Short() {
		if !skipped {
			t.Errorf("under -short: skipped = false, want true (fatal %q)", fatal)
		}
		return
	}
	if skipped || fatal == "" {
		t.Fatalf("skipped = %v, fatal = %q; want a failure", skipped, fatal)
	}
	for _, w := range append(want, Hint) {
		if !strings.Contains(fatal, w) {
			t.Errorf("failure message %q does not contain %q", fatal, w)
		}
	}
}

func TestUnsetEnvFails(t *testing.T) {
	for _, h := range helpers {
		t.Run(h.name, func(t *testing.T) {
			t.Setenv(h.env, "")
			fatal, skipped := run(t, h.fn)
			checkFailure(t, fatal, skipped, "$"+h.env+" is not set")
		})
	}
}

func TestUnreachableFails(t *testing.T) {
	// A loopback port with nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	for _, h := range helpers {
		t.Run(h.name, func(t *testing.T) {
			t.Setenv(h.env, dead)
			fatal, skipped := run(t, h.fn)
			checkFailure(t, fatal, skipped, dead, "does not answer PING")
		})
	}
}

func TestNewServerWithoutRedisServerFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	fatal, skipped := run(t, func(t testing.TB) { NewServer(t) })
	checkFailure(t, fatal, skipped, "redis-server", "not in PATH")
}

func TestWaitCluster(t *testing.T) {
	t.Parallel()
	// A one-node cluster without slots says cluster_state:fail until it gets
	// all 16384 of them.
	s := NewServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	addrs := []string{s.Addr()}
	newClient := func() *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { c.Close() })
		return c
	}

	fatal, _ := run(t, func(tb testing.TB) { waitCluster(tb, newClient(), addrs, 300*time.Millisecond) })
	for _, want := range []string{"did not become ready", Hint} {
		if !strings.Contains(fatal, want) {
			t.Errorf("waitCluster on a cluster without slots: failure %q does not contain %q", fatal, want)
		}
	}

	if err := s.Client(t).Do(ctxT(t), "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	if fatal, _ := run(t, func(tb testing.TB) { waitCluster(tb, newClient(), addrs, 20*time.Second) }); fatal != "" {
		t.Errorf("waitCluster after ADDSLOTSRANGE failed: %s", fatal)
	}
}

func TestNewCluster(t *testing.T) {
	pc := NewCluster(t, 3, 1)
	c := pc.Client(t, nil)
	ctx := context.Background()
	for i := range 50 {
		if err := c.Set(ctx, fmt.Sprint("k", i), "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET on the private cluster: %v", err)
		}
	}
	nodes, err := pc.Primaries[0].Client(t).ClusterNodes(ctx).Result()
	if err != nil || strings.Count(nodes, "slave") != 1 || strings.Count(nodes, "master") != 3 {
		t.Fatalf("CLUSTER NODES = %q, %v; want 3 primaries and 1 replica", nodes, err)
	}
}
