package tiered_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"go.uber.org/goleak"
)

// TestCloseLeavesNoGoroutines: after Close (and closing the Redis client the
// cache was given), nothing the cache started is left running: not its
// flights, not an early refresh, not ristretto's workers.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	addr := redistest.StandaloneAddr(t)
	before := goleak.IgnoreCurrent()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	l1, err := local.New[user]()
	if err != nil {
		t.Fatal(err)
	}
	l2, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[user](redistest.Name(t), l1, l2,
		tiered.WithRemoteTTL(time.Second), tiered.WithJitter(0), tiered.WithEarlyRefresh(100_000))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	slow := make(chan struct{})
	load := func(ctx context.Context, key string) (user, error) {
		if key == "slow" {
			close(slow)
			<-ctx.Done()
			return user{}, ctx.Err()
		}
		time.Sleep(time.Millisecond) // a load time for XFetch to work with
		return user{ID: key}, nil
	}
	c.GetOrLoad(ctx, "a", load)
	// L2 hits with a huge beta start an early refresh almost surely.
	for i := 0; c.Stats().RefreshesStarted == 0; i++ {
		if i == 100 {
			t.Fatal("no early refresh started in 100 L2 hits")
		}
		l1.Invalidate("a")
		c.GetOrLoad(ctx, "a", load)
	}
	go c.GetOrLoad(ctx, "slow", load)
	<-slow
	c.GetOrLoadMany(ctx, []string{"b", "c"}, func(ctx context.Context, keys []string) (map[string]user, error) {
		return map[string]user{"b": {ID: "b"}}, nil
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rdb.Close()
	goleak.VerifyNone(t, before)
}
