package invalidation

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const startHelp = `start the test servers with:
    bash test/redis.sh start && eval "$(bash test/redis.sh env)"`

// standaloneClient returns a new client of the shared standalone server.
func standaloneClient(t testing.TB) *redis.Client {
	t.Helper()
	addr := os.Getenv("TIERCACHE_REDIS_ADDR")
	if addr == "" {
		if testing.Short() {
			t.Skip("no Redis in -short mode")
		}
		t.Fatal("TIERCACHE_REDIS_ADDR is not set; " + startHelp)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	pingOrFail(t, c)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clusterClient returns a new client of the shared Redis Cluster.
func clusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	addrs := os.Getenv("TIERCACHE_CLUSTER_ADDRS")
	if addrs == "" {
		if testing.Short() {
			t.Skip("no Redis in -short mode")
		}
		t.Fatal("TIERCACHE_CLUSTER_ADDRS is not set; " + startHelp)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	pingOrFail(t, c)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func pingOrFail(t testing.TB, c redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis does not answer: %v; %s", err, startHelp)
	}
}

var nameSeq atomic.Uint64

// uniqueName returns a name no other test (in this or another process)
// uses, for namespaces and channel prefixes.
func uniqueName(t testing.TB) string {
	n := strings.NewReplacer("/", "-", " ", "_", "{", "", "}", "").Replace(t.Name())
	return fmt.Sprintf("t:%s:%d:%d", n, time.Now().UnixNano(), nameSeq.Add(1))
}

// transport is one way of running the bus, for table-driven tests.
type transport struct {
	name   string
	client func(testing.TB) Client
	opts   []Option
}

func transports() []transport {
	return []transport{
		{name: "standalone", client: func(t testing.TB) Client { return standaloneClient(t) }},
		{name: "cluster-sharded", client: func(t testing.TB) Client { return clusterClient(t) }},
		{name: "cluster-classic", client: func(t testing.TB) Client { return clusterClient(t) }, opts: []Option{WithShardedPubSub(false)}},
	}
}

// newBus starts a bus closed at the end of the test.
func newBus(t testing.TB, c Client, opts ...Option) *Bus {
	t.Helper()
	b, err := New(c, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// recorder is a cache stand-in: it records the keys and flushes it gets.
type recorder struct {
	mu      sync.Mutex
	keys    map[string]int // key → times invalidated
	calls   int
	flushes int
	changed chan struct{} // signalled (non-blocking) on every callback
}

func newRecorder() *recorder {
	return &recorder{keys: make(map[string]int), changed: make(chan struct{}, 1)}
}

func (r *recorder) invalidate(keys []string) {
	r.mu.Lock()
	for _, k := range keys {
		r.keys[k]++
	}
	r.calls++
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) flush() {
	r.mu.Lock()
	r.flushes++
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) has(keys ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if r.keys[k] == 0 {
			return false
		}
	}
	return true
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

func (r *recorder) flushCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushes
}

func (r *recorder) sortedKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ks := make([]string, 0, len(r.keys))
	for k := range r.keys {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (r *recorder) subscribe(t testing.TB, b *Bus, namespace string) {
	t.Helper()
	unsub, err := b.Subscribe(namespace, r.invalidate, r.flush)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", namespace, err)
	}
	t.Cleanup(unsub)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// privateServer is a redis-server of one test, for faults that would disturb
// the shared servers. (internal/redistest.NewServer does the same for the
// rest of the module.)
type privateServer struct {
	bin, dir, addr string
	port           int
	cmd            *exec.Cmd
}

func startPrivateServer(t testing.TB) *privateServer {
	t.Helper()
	if testing.Short() {
		t.Skip("no Redis in -short mode")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed; " + startHelp)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s := &privateServer{bin: bin, dir: t.TempDir(), port: port, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	t.Cleanup(s.kill)
	s.start(t)
	return s
}

// start runs the server (again, on the same port) and waits until it
// answers.
func (s *privateServer) start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", s.dir)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	defer c.Close()
	eventually(t, 10*time.Second, "the private redis-server to answer", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
}

// kill stops the server like a crash and waits until it has exited.
func (s *privateServer) kill() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func (s *privateServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testLogger logs the bus's warnings and debug lines to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
