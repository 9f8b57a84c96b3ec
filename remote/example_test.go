package remote_test

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

type user struct {
	ID   string
	Name string
}

// An L2-only cache on a Redis Cluster: remote.New wraps the go-redis client;
// tiered.New with a nil L1 reads and writes Redis only. (It needs a running
// Redis, so it has no Output.)
func ExampleNew() {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"},
		ContextTimeoutEnabled: true, // lets tiercache's per-call timeouts cut slow calls
	})
	defer rdb.Close()

	l2, err := remote.New(rdb,
		remote.WithMaxValueBytes(256<<10)) // default codec: JSON
	if err != nil {
		panic(err)
	}
	users, err := tiered.New[user]("users", nil, l2, tiered.WithRemoteTTL(10*time.Minute))
	if err != nil {
		panic(err)
	}
	defer users.Close()

	ctx := context.Background()
	u, err := users.GetOrLoad(ctx, "42", func(ctx context.Context, id string) (user, error) {
		return user{ID: id, Name: "Ada"}, nil // the database query
	})
	_, _ = u, err
}
