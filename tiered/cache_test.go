package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

func TestL1HitAfterLoad(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		n := newNode[user](t, redistest.Name(t), rdb)
		var loader countingLoader
		for i := range 3 {
			got, err := n.GetOrLoad(ctx, "42", loader.load)
			if err != nil || got.Name != "name-42" {
				t.Fatalf("call %d: GetOrLoad = %+v, %v", i, got, err)
			}
			n.l1.Wait()
		}
		if c := loader.calls.Load(); c != 1 {
			t.Fatalf("loader calls = %d, want 1", c)
		}
		st := n.Stats()
		if st.L1Hits != 2 || st.L1Misses != 1 || st.LeasesAcquired != 1 {
			t.Fatalf("stats = %+v, want 2 L1 hits, 1 miss, 1 lease", st)
		}
	})
}

func TestL2HitFromSecondNode(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		a := newNode[user](t, name, rdb)
		b := newNode[user](t, name, rdb)
		var loader countingLoader
		if _, err := a.GetOrLoad(ctx, "7", loader.load); err != nil {
			t.Fatal(err)
		}
		got, err := b.GetOrLoad(ctx, "7", loader.load)
		if err != nil || got.Name != "name-7" {
			t.Fatalf("node B GetOrLoad = %+v, %v", got, err)
		}
		if c := loader.calls.Load(); c != 1 {
			t.Fatalf("loader calls = %d, want 1 (node B must read L2)", c)
		}
		if st := b.Stats(); st.L2Hits != 1 {
			t.Fatalf("node B L2 hits = %d, want 1", st.L2Hits)
		}
		// Get (no loader) on a third node sees it too.
		c := newNode[user](t, name, rdb)
		if v, ok, err := c.Get(ctx, "7"); err != nil || !ok || v.ID != "7" {
			t.Fatalf("node C Get = %+v, %v, %v", v, ok, err)
		}
	})
}

func TestL2HitAfterL1Expiry(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), rdb, tiered.WithLocalTTL(50*time.Millisecond))
	var loader countingLoader
	n.GetOrLoad(ctx, "1", loader.load)
	n.l1.Wait()
	eventually(t, 5*time.Second, "L1 entry did not expire after LocalTTL", func() bool {
		_, _, ok := n.l1.Get("1")
		return !ok
	})
	if _, err := n.GetOrLoad(ctx, "1", loader.load); err != nil {
		t.Fatal(err)
	}
	if c, hits := loader.calls.Load(), n.Stats().L2Hits; c != 1 || hits != 1 {
		t.Fatalf("loader calls %d, L2 hits %d; want 1 and 1", c, hits)
	}
}

func TestL1TTLIsCappedByRemainingL2TTL(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	// L2 TTL far shorter than LocalTTL: L1 must not outlive the L2 value.
	n := newNode[user](t, redistest.Name(t), rdb,
		tiered.WithLocalTTL(time.Hour), tiered.WithRemoteTTL(300*time.Millisecond), tiered.WithJitter(0))
	var loader countingLoader
	start := time.Now()
	n.GetOrLoad(ctx, "k", loader.load)
	n.l1.Wait()
	if _, _, ok := n.l1.Get("k"); !ok {
		t.Fatal("value not in L1 after load")
	}
	eventually(t, 5*time.Second, "L1 entry outlived its L2 TTL", func() bool {
		_, _, ok := n.l1.Get("k")
		return !ok
	})
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("L1 entry gone after %v, before the 300ms L2 TTL", el)
	}
	// A node reading a value with 200 ms left in L2 keeps it at most that long.
	other := newNode[user](t, n.Name(), rdb, tiered.WithLocalTTL(time.Hour))
	n.Set(ctx, "k2", user{ID: "k2"})
	if _, err := other.GetOrLoad(ctx, "k2", loader.load); err != nil {
		t.Fatal(err)
	}
	other.l1.Wait()
	eventually(t, 5*time.Second, "second node's L1 entry outlived the L2 TTL", func() bool {
		_, _, ok := other.l1.Get("k2")
		return !ok
	})
}

func TestJitterStaysInRange(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	n := newNode[int](t, redistest.Name(t), rdb, tiered.WithRemoteTTL(100*time.Second), tiered.WithJitter(0.2))
	seen := map[time.Duration]bool{}
	for i := range 50 {
		key := fmt.Sprint(i)
		if err := n.Set(ctx, key, i); err != nil {
			t.Fatal(err)
		}
		ttl := rdb.PTTL(ctx, n.Name()+":"+key).Val()
		if ttl < 79*time.Second || ttl > 120*time.Second {
			t.Fatalf("PTTL %v outside 100s ± 20%%", ttl)
		}
		seen[ttl.Truncate(time.Second)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("50 TTLs fell in only %d distinct seconds: no jitter", len(seen))
	}
}

func TestNegativeCaching(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		n := newNode[user](t, redistest.Name(t), rdb, tiered.WithNotFoundTTL(300*time.Millisecond), tiered.WithJitter(0))
		loader := countingLoader{fn: func(context.Context, string) (user, error) {
			return user{}, fmt.Errorf("row missing: %w", tiered.ErrNotFound)
		}}
		for range 3 {
			if _, err := n.GetOrLoad(ctx, "gone", loader.load); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("GetOrLoad = %v, want ErrNotFound", err)
			}
			n.l1.Wait()
		}
		if c := loader.calls.Load(); c != 1 {
			t.Fatalf("loader calls = %d, want 1 (not-found must be cached)", c)
		}
		if _, ok, err := n.Get(ctx, "gone"); ok || err != nil {
			t.Fatalf("Get of a cached not-found = ok %v, %v; want a miss", ok, err)
		}
		// A second node sees the not-found in L2.
		other := newNode[user](t, n.Name(), rdb)
		if _, err := other.GetOrLoad(ctx, "gone", loader.load); !errors.Is(err, tiered.ErrNotFound) || loader.calls.Load() != 1 {
			t.Fatalf("second node: %v, loader calls %d; want ErrNotFound from L2", err, loader.calls.Load())
		}
		ttl := rdb.PTTL(ctx, n.Name()+":gone").Val()
		if ttl <= 0 || ttl > 300*time.Millisecond {
			t.Fatalf("not-found PTTL = %v, want within 300ms", ttl)
		}
		eventually(t, 5*time.Second, "not-found never expired", func() bool {
			n.GetOrLoad(ctx, "gone", loader.load)
			return loader.calls.Load() > 1
		})
	})
}

func TestNegativeCachingOff(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), rdb, tiered.WithNotFoundTTL(0))
	loader := countingLoader{fn: func(context.Context, string) (user, error) { return user{}, tiered.ErrNotFound }}
	for range 2 {
		if _, err := n.GetOrLoad(ctx, "x", loader.load); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if c := loader.calls.Load(); c != 2 {
		t.Fatalf("loader calls = %d, want 2 with negative caching off", c)
	}
	if n := rdb.Exists(ctx, n.Name()+":x").Val(); n != 0 {
		t.Fatal("lease or entry left in L2 with negative caching off")
	}
}

func TestLoaderErrorNotCached(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		n := newNode[user](t, redistest.Name(t), rdb)
		boom := errors.New("db down")
		fail := true
		loader := countingLoader{fn: func(_ context.Context, key string) (user, error) {
			if fail {
				return user{}, boom
			}
			return user{ID: key}, nil
		}}
		if _, err := n.GetOrLoad(ctx, "k", loader.load); !errors.Is(err, boom) {
			t.Fatalf("GetOrLoad = %v, want the loader's error", err)
		}
		if e, err := n.l2.Get(ctx, n.Name()+":k"); err != nil || (e.Kind != driver.KindFailed && e.Kind != driver.KindNone) {
			t.Fatalf("L2 holds %+v, %v after a loader error; want nothing or the failure marker", e, err)
		}
		fail = false
		if got, err := n.GetOrLoad(ctx, "k", loader.load); err != nil || got.ID != "k" {
			t.Fatalf("retry = %+v, %v", got, err)
		}
		if c := loader.calls.Load(); c != 2 {
			t.Fatalf("loader calls = %d, want 2", c)
		}
	})
}

func TestLoaderPanic(t *testing.T) {
	rdb := redistest.Standalone(t)
	n := newNode[user](t, redistest.Name(t), rdb)
	_, err := n.GetOrLoad(context.Background(), "p", func(context.Context, string) (user, error) {
		panic("kaboom")
	})
	if !errors.Is(err, tiered.ErrLoaderPanic) || !strings.Contains(err.Error(), "kaboom") || !strings.Contains(err.Error(), "goroutine") {
		t.Fatalf("err = %v; want ErrLoaderPanic with the value and a stack", err)
	}
	if got := n.Stats().LoadErrors; got != 1 {
		t.Fatalf("LoadErrors = %d, want 1", got)
	}
}

func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	rdb := redistest.Standalone(t)
	n := newNode[user](t, redistest.Name(t), rdb)
	started, release := make(chan struct{}), make(chan struct{})
	loader := countingLoader{fn: func(ctx context.Context, key string) (user, error) {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
			return user{}, ctx.Err()
		}
		return user{ID: key}, nil
	}}
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() { _, err := n.GetOrLoad(ctxA, "k", loader.load); errA <- err }()
	<-started
	type res struct {
		u   user
		err error
	}
	resB := make(chan res, 1)
	go func() { u, err := n.GetOrLoad(context.Background(), "k", loader.load); resB <- res{u, err} }()
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller A = %v, want context.Canceled", err)
	}
	close(release)
	r := <-resB
	if r.err != nil || r.u.ID != "k" {
		t.Fatalf("caller B = %+v, %v; want the value", r.u, r.err)
	}
	if c := loader.calls.Load(); c != 1 {
		t.Fatalf("loader calls = %d, want 1", c)
	}
}

func TestRedisDownFallsBackToLoader(t *testing.T) {
	srv := redistest.NewServer(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), rdb, tiered.WithRemoteTimeout(200*time.Millisecond))
	var loader countingLoader
	if _, err := n.GetOrLoad(ctx, "before", loader.load); err != nil {
		t.Fatal(err)
	}
	if errs := n.errors.all(); len(errs) != 0 {
		t.Fatalf("errors while Redis is up: %v", errs)
	}
	srv.Stop(t)
	got, err := n.GetOrLoad(ctx, "after", loader.load)
	if err != nil || got.ID != "after" {
		t.Fatalf("GetOrLoad with Redis down = %+v, %v; want the loader's value", got, err)
	}
	errs := n.errors.all()
	if len(errs) == 0 || !errors.Is(errs[0], tiered.ErrRemote) {
		t.Fatalf("handled errors = %v; want an ErrRemote", errs)
	}
	// The degraded value is still served from L1.
	n.l1.Wait()
	calls := loader.calls.Load()
	if _, err := n.GetOrLoad(ctx, "after", loader.load); err != nil || loader.calls.Load() != calls {
		t.Fatalf("second read with Redis down: %v, loader calls %d -> %d", err, calls, loader.calls.Load())
	}
	// Get, Set and Delete return the error.
	if _, _, err := n.Get(ctx, "nope"); !errors.Is(err, tiered.ErrRemote) {
		t.Errorf("Get = %v, want ErrRemote", err)
	}
	if err := n.Set(ctx, "s", user{}); !errors.Is(err, tiered.ErrRemote) {
		t.Errorf("Set = %v, want ErrRemote", err)
	}
	if err := n.Delete(ctx, "s"); !errors.Is(err, tiered.ErrRemote) {
		t.Errorf("Delete = %v, want ErrRemote", err)
	}
	srv.Start(t)
	eventually(t, 10*time.Second, "cache did not use Redis again after restart", func() bool {
		return n.Set(ctx, "s", user{ID: "s"}) == nil
	})
}

func TestBadInput(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	name := redistest.Name(t)
	n := newNode[string](t, name, rdb)
	load := func(context.Context, string) (string, error) { return "v", nil }
	if _, err := n.GetOrLoad(ctx, "", load); !errors.Is(err, tiered.ErrEmptyKey) {
		t.Errorf("GetOrLoad(\"\") = %v", err)
	}
	if _, _, err := n.Get(ctx, ""); !errors.Is(err, tiered.ErrEmptyKey) {
		t.Errorf("Get(\"\") = %v", err)
	}
	if err := n.Set(ctx, "", "v"); !errors.Is(err, tiered.ErrEmptyKey) {
		t.Errorf("Set(\"\") = %v", err)
	}
	if err := n.Delete(ctx, "a", ""); !errors.Is(err, tiered.ErrEmptyKey) {
		t.Errorf("Delete(a, \"\") = %v", err)
	}
	// A batch reports its invalid keys one by one and serves the others.
	many, err := n.GetOrLoadMany(ctx, []string{"a", ""}, func(context.Context, []string) (map[string]string, error) {
		return map[string]string{"a": "va"}, nil
	})
	var ke tiered.KeyErrors
	if !errors.As(err, &ke) || !errors.Is(ke[""], tiered.ErrEmptyKey) || many["a"] != "va" {
		t.Errorf("GetOrLoadMany with an empty key = %v, %v; want a's value and a KeyErrors for \"\"", many, err)
	}
	if _, err := n.GetOrLoadMany(ctx, []string{"a"}, nil); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Errorf("GetOrLoadMany with nil loader = %v", err)
	}
	if _, err := n.GetOrLoad(ctx, "k", nil); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Errorf("GetOrLoad with nil loader = %v", err)
	}
	long := strings.Repeat("x", remote.DefaultMaxKeyBytes)
	if _, _, err := n.Get(ctx, long); !errors.Is(err, remote.ErrKeyTooLong) || !errors.Is(err, tiered.ErrRemote) {
		t.Errorf("Get(long key) = %v, want ErrKeyTooLong", err)
	}
	if err := n.Set(ctx, "big", strings.Repeat("x", remote.DefaultMaxValueBytes)); !errors.Is(err, remote.ErrValueTooLarge) {
		t.Errorf("Set(huge value) = %v, want ErrValueTooLarge", err)
	}
	// An oversized value from a loader is still returned, and the failure reported.
	got, err := n.GetOrLoad(ctx, "bigload", func(context.Context, string) (string, error) {
		return strings.Repeat("y", remote.DefaultMaxValueBytes), nil
	})
	if err != nil || len(got) != remote.DefaultMaxValueBytes {
		t.Errorf("GetOrLoad of a huge value = %d bytes, %v", len(got), err)
	}
	if errs := n.errors.all(); len(errs) == 0 || !errors.Is(errs[len(errs)-1], remote.ErrValueTooLarge) {
		t.Errorf("handled errors = %v, want ErrValueTooLarge reported", errs)
	}
}

func TestCorruptBytesInRedisAreReloaded(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		n := newNode[user](t, redistest.Name(t), rdb)
		var loader countingLoader
		planted := map[string]string{
			"garbage": "not an envelope",
			// A valid envelope whose payload is not JSON of a user.
			"badjson": string(remote.Encode(nil, driver.Entry{Kind: driver.KindValue, Payload: []byte("{oops"), ExpiresAt: time.Now().Add(time.Minute)})),
		}
		for key, raw := range planted {
			if err := rdb.Set(ctx, n.Name()+":"+key, raw, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			got, err := n.GetOrLoad(ctx, key, loader.load)
			if err != nil || got.ID != key {
				t.Fatalf("%s: GetOrLoad = %+v, %v; want a reload", key, got, err)
			}
		}
		if c := loader.calls.Load(); c != 2 {
			t.Fatalf("loader calls = %d, want 2", c)
		}
		if st := n.Stats(); st.L2Corrupt != 1 || n.l2.Stats().Corrupt != 1 {
			t.Fatalf("corrupt counters: tiered %d, remote %d; want 1 and 1", st.L2Corrupt, n.l2.Stats().Corrupt)
		}
		// Both are now valid entries in L2.
		other := newNode[user](t, n.Name(), rdb)
		for key := range planted {
			if v, ok, err := other.Get(ctx, key); !ok || err != nil || v.ID != key {
				t.Fatalf("%s after reload: %+v, %v, %v", key, v, ok, err)
			}
		}
	})
}

func TestCloseStopsEverything(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	n := newNode[user](t, redistest.Name(t), rdb)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := n.GetOrLoad(ctx, "slow", func(ctx context.Context, key string) (user, error) {
			close(started)
			<-ctx.Done() // only Close can end this load
			return user{}, ctx.Err()
		})
		done <- err
	}()
	<-started
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("in-flight load survived Close")
	}
	n.Close() // idempotent
	if _, err := n.GetOrLoad(ctx, "k", (&countingLoader{}).load); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("GetOrLoad after Close = %v", err)
	}
	if _, _, err := n.Get(ctx, "k"); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if err := n.Set(ctx, "k", user{}); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("Set after Close = %v", err)
	}
	if err := n.Delete(ctx, "k"); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("Delete after Close = %v", err)
	}
	if _, err := n.GetOrLoadMany(ctx, []string{"k"}, nil); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("GetOrLoadMany after Close = %v", err)
	}
	// The abandoned lease must not block others past its TTL: it was released.
	if e := rdb.Exists(ctx, n.Name()+":slow").Val(); e != 0 {
		t.Error("Close left the lease of the cancelled load in L2")
	}
}

func TestOptionsRejected(t *testing.T) {
	l1 := func() driver.Local[int] { return nil }
	tests := map[string]tiered.Option{
		"local ttl":      tiered.WithLocalTTL(0),
		"remote ttl":     tiered.WithRemoteTTL(-time.Second),
		"not found ttl":  tiered.WithNotFoundTTL(-1),
		"jitter 1":       tiered.WithJitter(1),
		"jitter neg":     tiered.WithJitter(-0.1),
		"remote timeout": tiered.WithRemoteTimeout(-1),
		"load timeout":   tiered.WithLoadTimeout(0),
		"lease ttl":      tiered.WithLeaseTTL(0),
		"lease poll":     tiered.WithLeasePoll(10*time.Millisecond, time.Millisecond),
		"nil handler":    tiered.WithErrorHandler(nil),
		"nil logger":     tiered.WithLogger(nil),
		"nil bus":        tiered.WithInvalidation(nil),
		"nil option":     nil,
	}
	st, _ := remote.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}))
	for name, opt := range tests {
		if _, err := tiered.New[int]("c", l1(), st, opt); !errors.Is(err, tiered.ErrInvalidOption) {
			t.Errorf("%s: New = %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := tiered.New[int]("", nil, st); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Errorf("empty name: %v", err)
	}
	if _, err := tiered.New[int]("c", nil, nil); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Errorf("no tiers: %v", err)
	}
}

func TestSetThenReadEverywhere(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		a := newNode[user](t, name, rdb)
		b := newNode[user](t, name, rdb)
		if err := a.Set(ctx, "s", user{ID: "s", Name: "one"}); err != nil {
			t.Fatal(err)
		}
		a.l1.Wait()
		if v, ok, _ := a.Get(ctx, "s"); !ok || v.Name != "one" || a.Stats().L1Hits != 1 {
			t.Fatalf("writer's own read = %+v, %v (L1 hits %d); want one from L1", v, ok, a.Stats().L1Hits)
		}
		if v, ok, _ := b.Get(ctx, "s"); !ok || v.Name != "one" {
			t.Fatalf("other node's read = %+v, %v", v, ok)
		}
		if err := a.Delete(ctx, "s"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := a.Get(ctx, "s"); ok {
			t.Fatal("writer still sees a deleted key")
		}
	})
}

func TestConcurrentCallersShareOneLoad(t *testing.T) {
	rdb := redistest.Standalone(t)
	n := newNode[user](t, redistest.Name(t), rdb)
	release := make(chan struct{})
	loader := countingLoader{fn: func(_ context.Context, key string) (user, error) {
		<-release
		return user{ID: key}, nil
	}}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if u, err := n.GetOrLoad(context.Background(), "hot", loader.load); err != nil || u.ID != "hot" {
				errs <- fmt.Errorf("got %+v, %v", u, err)
			}
		})
	}
	eventually(t, 5*time.Second, "loader never started", func() bool { return loader.calls.Load() == 1 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := loader.calls.Load(); c != 1 {
		t.Fatalf("loader calls = %d, want 1", c)
	}
}
