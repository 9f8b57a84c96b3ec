package tiered_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// recordingL1 is a local.Store that remembers the TTL of every Fill.
type recordingL1[V any] struct {
	*local.Store[V]
	mu   sync.Mutex
	ttls map[string]time.Duration
}

func newRecordingL1[V any](t *testing.T) *recordingL1[V] {
	t.Helper()
	s, err := local.New[V]()
	if err != nil {
		t.Fatal(err)
	}
	return &recordingL1[V]{Store: s, ttls: make(map[string]time.Duration)}
}

func (r *recordingL1[V]) Fill(key string, v V, absent bool, ttl time.Duration, gen uint64) bool {
	r.mu.Lock()
	r.ttls[key] = ttl
	r.mu.Unlock()
	return r.Store.Fill(key, v, absent, ttl, gen)
}

// FillWritten records like Fill (the fill after a Set with an L2).
func (r *recordingL1[V]) FillWritten(key string, v V, absent bool, ttl time.Duration, gen uint64) bool {
	r.mu.Lock()
	r.ttls[key] = ttl
	r.mu.Unlock()
	return r.Store.FillWritten(key, v, absent, ttl, gen)
}

// FillMany records like Fill (the batch fill GetOrLoadMany uses).
func (r *recordingL1[V]) FillMany(n int, at func(i int) (string, V, bool, time.Duration, uint64)) int {
	r.mu.Lock()
	for i := range n {
		key, _, _, ttl, _ := at(i)
		r.ttls[key] = ttl
	}
	r.mu.Unlock()
	return r.Store.FillMany(n, at)
}

func (r *recordingL1[V]) ttl(t *testing.T, key string) time.Duration {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.ttls[key]
	if !ok {
		t.Fatalf("no L1 fill of %q", key)
	}
	return d
}

// ttlNode is a cache with a recording L1, no jitter, LocalTTL 1 h and
// RemoteTTL 10 min, so that any shorter L1 TTL comes from a per-key TTL.
func ttlNode(t *testing.T, name string, rdb redis.UniversalClient, opts ...tiered.Option) (*tiered.Cache[user], *recordingL1[user]) {
	t.Helper()
	l1 := newRecordingL1[user](t)
	var r driver.Remote
	if rdb != nil {
		s, err := remote.New(rdb)
		if err != nil {
			t.Fatal(err)
		}
		r = s
	}
	all := append([]tiered.Option{tiered.WithRemoteTimeout(2 * time.Second), tiered.WithJitter(0),
		tiered.WithLocalTTL(time.Hour), tiered.WithRemoteTTL(10 * time.Minute), tiered.WithEarlyRefresh(0)}, opts...)
	c, err := tiered.New[user](name, l1, r, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, l1
}

// wantPTTL checks that key of cache name lives in Redis for (want - slack, want].
func wantPTTL(t *testing.T, rdb redis.UniversalClient, name, key string, want time.Duration) {
	t.Helper()
	got, err := rdb.PTTL(context.Background(), name+":"+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got > want || got < want-time.Minute/2 {
		t.Fatalf("PTTL of %q = %v, want about %v", key, got, want)
	}
}

// wantL1TTL checks that key's last L1 fill had a TTL in (want - slack, want].
func wantL1TTL(t *testing.T, l1 *recordingL1[user], key string, want time.Duration) {
	t.Helper()
	if got := l1.ttl(t, key); got > want || got < want-time.Minute/2 {
		t.Fatalf("L1 TTL of %q = %v, want about %v", key, got, want)
	}
}

func TestLoaderTTLReachesL2AndBoundsL1(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		a, aL1 := ttlNode(t, name, rdb)
		b, bL1 := ttlNode(t, name, rdb)
		load := func(ctx context.Context, key string) (user, error) {
			if err := tiered.SetTTL(ctx, 5*time.Minute); err != nil {
				return user{}, err
			}
			return user{ID: key}, nil
		}
		if _, err := a.GetOrLoad(ctx, "short", load); err != nil {
			t.Fatal(err)
		}
		wantPTTL(t, rdb, name, "short", 5*time.Minute)
		wantL1TTL(t, aL1, "short", 5*time.Minute)
		// Another node reads it from L2: the envelope's expiry bounds its L1.
		if _, err := b.GetOrLoad(ctx, "short", load); err != nil {
			t.Fatal(err)
		}
		wantL1TTL(t, bL1, "short", 5*time.Minute)
		// A loader that says nothing gets RemoteTTL; L1 gets min(LocalTTL, L2).
		if _, err := a.GetOrLoad(ctx, "plain", func(context.Context, string) (user, error) { return user{}, nil }); err != nil {
			t.Fatal(err)
		}
		wantPTTL(t, rdb, name, "plain", 10*time.Minute)
		wantL1TTL(t, aL1, "plain", 10*time.Minute)
	})
}

// TestBatchAndSingleTTLsAgree loads keys with the same TTLs through
// GetOrLoad and GetOrLoadMany and finds the same expiries in both tiers.
func TestBatchAndSingleTTLsAgree(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		c, l1 := ttlNode(t, name, rdb, tiered.WithNotFoundTTL(0))
		ttls := map[string]time.Duration{"a": 3 * time.Minute, "b": 7 * time.Minute, "gone": 4 * time.Minute}
		single := func(ctx context.Context, key string) (user, error) {
			if err := tiered.SetTTL(ctx, ttls[key[2:]]); err != nil {
				return user{}, err
			}
			if key[2:] == "gone" {
				return user{}, tiered.ErrNotFound
			}
			return user{ID: key}, nil
		}
		for k := range ttls {
			_, err := c.GetOrLoad(ctx, "s-"+k, single)
			if err != nil && !errors.Is(err, tiered.ErrNotFound) {
				t.Fatal(err)
			}
		}
		// The batch: SetTTL for all keys, SetKeyTTL overriding two of them
		// (one before, one after SetTTL), a not-found by omission.
		_, err := c.GetOrLoadMany(ctx, []string{"m-a", "m-b", "m-gone", "m-default"}, func(ctx context.Context, keys []string) (map[string]user, error) {
			if err := tiered.SetKeyTTL(ctx, "m-a", ttls["a"]); err != nil {
				return nil, err
			}
			if err := tiered.SetTTL(ctx, ttls["b"]); err != nil {
				return nil, err
			}
			if err := tiered.SetKeyTTL(ctx, "m-gone", ttls["gone"]); err != nil {
				return nil, err
			}
			return map[string]user{"m-a": {}, "m-b": {}, "m-default": {}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for k, d := range ttls {
			for _, prefix := range []string{"s-", "m-"} {
				wantPTTL(t, rdb, name, prefix+k, d)
				wantL1TTL(t, l1, prefix+k, d)
			}
		}
		// SetTTL covers every key of the batch call without its own.
		wantPTTL(t, rdb, name, "m-default", ttls["b"])
		// The not-found was cached although negative caching is off: the
		// loader asked for it.
		if _, err := c.GetOrLoad(ctx, "s-gone", func(context.Context, string) (user, error) {
			t.Error("loader called for a cached not-found")
			return user{}, nil
		}); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("GetOrLoad(s-gone) = %v, want ErrNotFound", err)
		}
	})
}

func TestSetTTL(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		c, l1 := ttlNode(t, name, rdb)
		if err := c.Set(ctx, "k", user{ID: "k"}, tiered.TTL(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		wantPTTL(t, rdb, name, "k", 2*time.Minute)
		wantL1TTL(t, l1, "k", 2*time.Minute)
		if err := c.Set(ctx, "d", user{ID: "d"}); err != nil {
			t.Fatal(err)
		}
		wantPTTL(t, rdb, name, "d", 10*time.Minute)
	})
}

func TestBadTTLsAreErrors(t *testing.T) {
	ctx := context.Background()
	name := redistest.Name(t)
	rdb := redistest.Standalone(t)
	c, _ := ttlNode(t, name, rdb)
	store, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	if err := tiered.SetTTL(ctx, time.Minute); !errors.Is(err, tiered.ErrNotInLoader) {
		t.Fatalf("SetTTL outside a loader = %v, want ErrNotInLoader", err)
	}
	if err := tiered.SetKeyTTL(ctx, "k", time.Minute); !errors.Is(err, tiered.ErrNotInLoader) {
		t.Fatalf("SetKeyTTL outside a loader = %v, want ErrNotInLoader", err)
	}
	for _, d := range []time.Duration{0, -time.Second, tiered.MaxTTL + 1} {
		var setErr error
		_, err := c.GetOrLoad(ctx, "bad", func(ctx context.Context, key string) (user, error) {
			setErr = tiered.SetTTL(ctx, d) // ignored by the loader: the load fails anyway
			return user{ID: key}, nil
		})
		if !errors.Is(setErr, tiered.ErrInvalidTTL) || !errors.Is(err, tiered.ErrInvalidTTL) {
			t.Fatalf("SetTTL(%v) = %v, GetOrLoad = %v; want ErrInvalidTTL for both", d, setErr, err)
		}
		if e, _ := store.Get(ctx, name+":bad"); e.Kind == driver.KindValue || e.Kind == driver.KindNotFound {
			t.Fatalf("a load with TTL %v was stored (kind %d)", d, e.Kind)
		}
		if err := c.Set(ctx, "bad", user{}, tiered.TTL(d)); !errors.Is(err, tiered.ErrInvalidTTL) {
			t.Fatalf("Set with TTL(%v) = %v, want ErrInvalidTTL", d, err)
		}
		if err := c.SetMany(ctx, map[string]user{"bad": {}}, tiered.TTL(d)); !errors.Is(err, tiered.ErrInvalidTTL) {
			t.Fatalf("SetMany with TTL(%v) = %v, want ErrInvalidTTL", d, err)
		}
	}
	// SetKeyTTL for a key the batch does not load fails the batch.
	_, err = c.GetOrLoadMany(ctx, []string{"x", "y"}, func(ctx context.Context, keys []string) (map[string]user, error) {
		tiered.SetKeyTTL(ctx, "z", time.Minute)
		return map[string]user{"x": {}, "y": {}}, nil
	})
	if !errors.Is(err, tiered.ErrNotInLoader) {
		t.Fatalf("GetOrLoadMany with SetKeyTTL of a foreign key = %v, want ErrNotInLoader", err)
	}
	for _, k := range []string{"x", "y"} {
		if e, _ := store.Get(ctx, name+":"+k); e.Kind == driver.KindValue || e.Kind == driver.KindNotFound {
			t.Fatalf("key %q of the failed batch was stored (kind %d)", k, e.Kind)
		}
	}
	if err := c.Set(ctx, "k", user{}, nil); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("Set with a nil option = %v, want ErrInvalidOption", err)
	}
}

// TestLocalOnlyTTL: without L2, a per-key TTL still bounds L1.
func TestLocalOnlyTTL(t *testing.T) {
	ctx := context.Background()
	c, l1 := ttlNode(t, redistest.Name(t), nil)
	if _, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (user, error) {
		return user{}, tiered.SetTTL(ctx, time.Minute)
	}); err != nil {
		t.Fatal(err)
	}
	wantL1TTL(t, l1, "k", time.Minute)
	if err := c.Set(ctx, "s", user{}, tiered.TTL(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantL1TTL(t, l1, "s", 2*time.Minute)
	if _, err := c.GetOrLoad(ctx, "gone", func(ctx context.Context, key string) (user, error) {
		tiered.SetTTL(ctx, 3*time.Minute)
		return user{}, tiered.ErrNotFound
	}); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatal(err)
	}
	wantL1TTL(t, l1, "gone", 3*time.Minute)
}
