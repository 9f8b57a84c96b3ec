package invalidation

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/bushook"
	"github.com/tiercache/tiercache/internal/redistest"
)

// standaloneClient returns a new client of the shared standalone server.
func standaloneClient(t testing.TB) *redis.Client { return redistest.Standalone(t) }

// clusterClient returns a new client of the shared Redis Cluster.
func clusterClient(t testing.TB) *redis.ClusterClient { return redistest.Cluster(t) }

// uniqueName returns a name no other test (in this or another process)
// uses, for namespaces and channel prefixes.
func uniqueName(t testing.TB) string { return redistest.Name(t) }

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
	sub, err := b.Subscribe(namespace, r.invalidate, r.flush)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", namespace, err)
	}
	t.Cleanup(sub.Unsubscribe)
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

// testLogger logs the bus's warnings and debug lines to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// withDrop injects message loss (see bushook.Hooks.Drop).
func withDrop(drop func(outgoing bool, m bushook.Msg) bool) Option {
	return func(c *config) error {
		c.hooks.Drop = drop
		return nil
	}
}
