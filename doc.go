// Package tiercache builds working two-tier caches in one call: a ristretto
// L1 in the process, a Redis (or Redis Cluster) L2 through go-redis v9, and
// the Redis pub/sub invalidation bus, with one Close for all of it.
//
// Make one Group per process from the go-redis client, then one cache per
// value type and name:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"}) // or redis.NewClusterClient
//	g, err := tiercache.NewGroup(rdb)
//	if err != nil { ... }
//	defer rdb.Close()
//	defer g.Close() // closes every cache of g, then the bus; runs before rdb.Close
//
//	users, err := tiercache.New[User](g, "users",
//		tiercache.WithTiered(tiered.WithLocalTTL(10*time.Second), tiered.WithRemoteTTL(time.Minute)),
//		tiercache.WithLocal(local.WithMaxEntries(100_000)))
//	u, err := users.GetOrLoad(ctx, "42", repo.FindUser)
//
// Every cache of a Group shares the Group's bus: a process keeps one set of
// pub/sub connections and heartbeats however many caches it has, and the
// bus's loss detection covers them all. New is a generic function rather
// than a method because Go methods cannot have type parameters.
//
// The caches are plain *tiered.Cache[V] values; everything package tiered
// documents applies (the read and write paths, TTL rules, leases,
// degradation, telemetry). Options of the pieces pass through: WithTiered
// (tiered.Option), WithLocal (local.Option), WithRemote (remote.Option) per
// cache, and WithBusOptions (invalidation.Option) and WithDefaults per
// Group.
//
// # Closing
//
// Group.Close closes the Group's caches, newest first (each cancels and
// awaits its loads in flight, leaves the bus and closes its L1), then the
// bus. It leaves the go-redis client open: close it after the Group.
//
// # The four-piece form
//
// A service that plugs its own L1 or L2, or wants the pieces apart, builds
// the same thing by hand with the four constructors; this package does
// nothing more:
//
//	bus, err := invalidation.New(rdb)                     // one per process
//	defer bus.Close()                                      // after every cache
//	l1, err := local.New[User]()                           // the cache closes it
//	l2, err := remote.New(rdb)
//	users, err := tiered.New[User]("users", l1, l2, tiered.WithInvalidation(bus))
//	defer users.Close()
//
// The Group's Bus method returns its bus, so hand-built caches can share it.
//
// # Dependencies
//
// This package imports tiered, local, remote and invalidation; none of them
// imports it. It keeps no package-level state. A Group and the caches it
// makes are safe for concurrent use.
package tiercache
