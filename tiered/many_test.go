package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// batchLoader records the keys of each call and serves ids below 1000 that
// are not multiples of 5 (the rest are absent rows).
type batchLoader struct {
	mu    sync.Mutex
	calls [][]string
	fail  error
}

func (l *batchLoader) load(_ context.Context, keys []string) (map[string]user, error) {
	l.mu.Lock()
	l.calls = append(l.calls, slices.Sorted(slices.Values(keys)))
	l.mu.Unlock()
	if l.fail != nil {
		return nil, l.fail
	}
	out := map[string]user{}
	for _, k := range keys {
		var id int
		fmt.Sscan(k, &id)
		if id%5 != 0 {
			out[k] = user{ID: k}
		}
	}
	return out, nil
}

func (l *batchLoader) loadedKeys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []string
	for _, c := range l.calls {
		all = append(all, c...)
	}
	return all
}

func TestGetOrLoadManyPartialHits(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		a := newNode[user](t, name, rdb)
		b := newNode[user](t, name, rdb)
		var keys []string
		for i := 1; i <= 60; i++ {
			keys = append(keys, fmt.Sprint(i))
		}
		// Node A caches the first 20 (in L1 and L2); node B asks for all 60.
		var warm batchLoader
		if _, err := a.GetOrLoadMany(ctx, keys[:20], warm.load); err != nil {
			t.Fatal(err)
		}
		var loader batchLoader
		got, err := b.GetOrLoadMany(ctx, append(keys, "7", "8"), loader.load) // duplicates are fine
		if err != nil {
			t.Fatalf("GetOrLoadMany: %v", err)
		}
		if len(loader.calls) != 1 {
			t.Fatalf("batch loader called %d times, want 1", len(loader.calls))
		}
		if want := keys[20:]; !slices.Equal(loader.calls[0], slices.Sorted(slices.Values(want))) {
			t.Fatalf("loader asked for %v, want only the 40 keys no tier had", loader.calls[0])
		}
		for _, k := range keys {
			var id int
			fmt.Sscan(k, &id)
			v, ok := got[k]
			if id%5 == 0 && ok {
				t.Errorf("absent key %s in result", k)
			}
			if id%5 != 0 && (!ok || v.ID != k) {
				t.Errorf("key %s = %+v, %v", k, v, ok)
			}
		}
		// Omitted ids are cached as not found: a second round loads nothing.
		b.l1.Wait()
		again, err := b.GetOrLoadMany(ctx, keys, loader.load)
		if err != nil || len(loader.calls) != 1 || len(again) != len(got) {
			t.Fatalf("second call: %v, loader calls %d, %d results (want %d)", err, len(loader.calls), len(again), len(got))
		}
		c := newNode[user](t, name, rdb)
		if _, err := c.GetOrLoad(ctx, "10", (&countingLoader{}).load); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("omitted key on a third node = %v, want ErrNotFound from L2", err)
		}
	})
}

func TestGetOrLoadManyErrorsPerKey(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		n := newNode[user](t, redistest.Name(t), rdb)
		if err := n.Set(ctx, "1", user{ID: "1"}); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("db down")
		loader := batchLoader{fail: boom}
		got, err := n.GetOrLoadMany(ctx, []string{"1", "2", "3"}, loader.load)
		var ke tiered.KeyErrors
		if !errors.As(err, &ke) || !errors.Is(err, boom) {
			t.Fatalf("err = %v, want KeyErrors wrapping the loader error", err)
		}
		if len(ke) != 2 || ke["2"] == nil || ke["3"] == nil {
			t.Fatalf("per-key errors = %v, want keys 2 and 3", ke)
		}
		if got["1"].ID != "1" || len(got) != 1 {
			t.Fatalf("results = %v, want key 1 despite the failure", got)
		}
		// Errors are not cached: the next call loads again.
		loader.fail = nil
		got, err = n.GetOrLoadMany(ctx, []string{"1", "2", "3"}, loader.load)
		if err != nil || len(got) != 3 {
			t.Fatalf("retry = %v, %v", got, err)
		}
		if keys := loader.loadedKeys(); !slices.Equal(keys, []string{"2", "3", "2", "3"}) {
			t.Fatalf("loaded keys %v", keys)
		}
	})
}

func TestGetOrLoadManyPanic(t *testing.T) {
	n := newNode[user](t, redistest.Name(t), redistest.Standalone(t))
	_, err := n.GetOrLoadMany(context.Background(), []string{"a", "b"}, func(context.Context, []string) (map[string]user, error) {
		panic("batch kaboom")
	})
	if !errors.Is(err, tiered.ErrLoaderPanic) {
		t.Fatalf("err = %v, want ErrLoaderPanic", err)
	}
}
