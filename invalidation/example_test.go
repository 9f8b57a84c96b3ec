package invalidation_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// One bus per process, shared by every cache: a Delete or Set on one node
// evicts the key from the L1 of every other node. (It needs a running Redis,
// so it has no Output.)
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()

	bus, err := invalidation.New(rdb,
		invalidation.WithChannelPrefix("orders-svc")) // per service sharing one Redis
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close() // after every cache on it

	l1, _ := local.New[string]()
	l2, _ := remote.New(rdb)
	names, err := tiered.New[string]("names", l1, l2,
		tiered.WithInvalidation(bus), tiered.WithLocalTTL(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer names.Close()

	ctx := context.Background()
	// After changing the database: every node drops "42" from its L1.
	if err := names.Delete(ctx, "42"); err != nil {
		log.Print(err)
	}
}

// The bus without package tiered: subscribe a namespace, publish keys.
func ExampleBus_Subscribe() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	bus, err := invalidation.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()

	sub, err := bus.Subscribe("sessions",
		func(keys []string) { log.Printf("evict %q", keys) }, // keys changed on another node
		func() { log.Print("evict everything") })             // messages may have been lost
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := bus.Publish(context.Background(), "sessions", []string{"s1", "s2"}); err != nil {
		log.Print(err)
	}
}
