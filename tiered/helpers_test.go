package tiered_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

type user struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// testRedis is one deployment tests run against.
type testRedis struct {
	name   string
	client func(t *testing.T) redis.UniversalClient
}

var deployments = []testRedis{
	{"standalone", func(t *testing.T) redis.UniversalClient { return redistest.Standalone(t) }},
	{"cluster", func(t *testing.T) redis.UniversalClient { return redistest.Cluster(t) }},
}

// eachDeployment runs f against the standalone server and the Cluster.
func eachDeployment(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient)) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) { f(t, d.client(t)) })
	}
}

// errorLog collects what a cache hands to its error handler.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) handle(_ context.Context, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// node is one cache instance standing for one service node: its own L1.
type node[V any] struct {
	*tiered.Cache[V]
	l1     *local.Store[V]
	l2     *remote.Store
	errors *errorLog
}

// newNode builds a cache called name on rdb with a fresh L1. Options default
// to a generous remote timeout so a loaded CI machine does not flake.
func newNode[V any](t *testing.T, name string, rdb redis.UniversalClient, opts ...tiered.Option) *node[V] {
	t.Helper()
	l1, err := local.New[V]()
	if err != nil {
		t.Fatal(err)
	}
	var l2 *remote.Store
	var r driver.Remote
	if rdb != nil {
		if l2, err = remote.New(rdb); err != nil {
			t.Fatal(err)
		}
		r = l2
	}
	log := &errorLog{}
	all := append([]tiered.Option{tiered.WithRemoteTimeout(2 * time.Second), tiered.WithErrorHandler(log.handle)}, opts...)
	c, err := tiered.New[V](name, l1, r, all...)
	if err != nil {
		t.Fatalf("tiered.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &node[V]{Cache: c, l1: l1, l2: l2, errors: log}
}

// countingLoader returns a loader counting its calls.
type countingLoader struct {
	calls atomic.Int64
	fn    func(ctx context.Context, key string) (user, error)
}

func (l *countingLoader) load(ctx context.Context, key string) (user, error) {
	l.calls.Add(1)
	if l.fn != nil {
		return l.fn(ctx, key)
	}
	return user{ID: key, Name: "name-" + key}, nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

// busSubscription is the Subscription of the tests' in-memory buses: it
// publishes through its bus's Publish (to every subscriber), and
// Unsubscribe calls unsubscribe (nil: the registration lasts as long as
// the bus).
type busSubscription struct {
	bus         driver.Bus
	namespace   string
	unsubscribe func()
}

func (s busSubscription) Publish(ctx context.Context, keys []string) error {
	return s.bus.Publish(ctx, s.namespace, keys)
}

func (s busSubscription) Unsubscribe() {
	if s.unsubscribe != nil {
		s.unsubscribe()
	}
}
