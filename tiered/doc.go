// Package tiered is the two-tier cache of tiercache: Cache[V] keeps values in
// an in-process L1 (package local, on ristretto) in front of a shared L2
// (package remote, on Redis or Redis Cluster), loads misses through a
// cluster-wide lease so a hot key costs one loader call per cluster, and
// drops values changed on other nodes through an invalidation bus (package
// invalidation).
//
// tiered knows only its own small interfaces (Local, Remote, Bus); the
// adapters satisfy them without importing this package, and either tier may
// be nil.
//
// # Read path (GetOrLoad)
//
//  1. L1: a fresh hit returns at once, with no allocation, no lock of ours and
//     no I/O.
//  2. Local flight: callers of one key on this node share one flight. It runs
//     detached from their contexts (bounded by the load timeout and stopped by
//     Close), so one caller's cancellation fails no other; each caller still
//     returns when its own context ends. The flight looks at L1 again first.
//  3. Generation snapshot: the key's L1 generation is read before L2; the L1
//     fill at the end happens only if no invalidation or flush changed it.
//  4. L2: a value is decoded, stored in L1 for min(LocalTTL, remaining L2
//     TTL) and returned; a not-found entry returns ErrNotFound; a lease means
//     another node is loading: poll with backoff until its result appears.
//  5. Lease: on an L2 miss, take the key's lease (SET NX). The winner calls
//     the loader; other callers on every node wait for its result, and take
//     the lease over if it vanishes or expires.
//  6. Fill: the winner replaces its lease by the result only if the key still
//     holds its lease. A Delete or Set during the load removed the lease, so a
//     possibly stale result is returned to its callers and stored nowhere.
//
// Loader errors reach every caller of the flight and are not cached; the
// lease is released. ErrNotFound from a loader is cached for NotFoundTTL. A
// loader panic becomes an error matching ErrLoaderPanic, with the stack.
// When L2 fails, GetOrLoad answers from the loader (keeping the result in L1
// only) and reports the L2 error to the error handler. After consecutive
// failures a circuit breaker (WithCircuitBreaker) makes L2 calls fail at
// once for a cool-down, so an outage costs no timeouts; one probe per
// cool-down finds Redis back.
//
// # Write path
//
// The application writes its database first, then tells the cache.
//
//  1. Set writes the value to L2 (replacing any lease), Delete removes the
//     keys from L2 (killing any lease, so no stale fill can land).
//  2. The keys' L1 generations are bumped and the keys evicted, after the L2
//     write, so a local flight that read the old L2 value cannot fill L1
//     with it. Set then stores the new value in L1 (read-your-writes).
//  3. The keys are published on the bus; Set and Delete return once Redis
//     accepted the message. Other nodes evict them through the same
//     generation guard.
//
// A lone Set whose bus and L2 share one go-redis client (package
// invalidation and package remote on the same client) makes steps 1 and 3
// one round trip: SET then PUBLISH (SPUBLISH on a Cluster, on a bus
// channel served by the key's primary) pipelined on one connection, which
// Redis runs in order, so the invalidation still follows the write. Writes
// that arrive while the key's channel has a round trip in flight take the
// two-step path and are batched by the bus. The L1 fill after a Set with
// an L2 does not wait for ristretto to apply it: a read in that moment
// misses L1 and reads the same value from L2.
//
// SetMany is Set for many keys: one pipelined L2 write, one invalidation
// for the batch, errors per key (KeyErrors).
//
// # TTLs
//
// An L1 entry lives min(LocalTTL, remaining L2 TTL). L2 TTLs get random
// jitter (default ±10 %). The L2 envelope carries the absolute expiry, so no
// extra round trip is needed to compute the remaining TTL. The cache's
// options are the defaults: a loader sets the TTL of what it returns with
// SetTTL (SetKeyTTL per key of a BatchLoader) on the context it is given,
// and Set and SetMany take TTL(d) per call.
//
// # Tags
//
// A loader tags what it returns with SetTags (SetKeyTags per key of a
// BatchLoader); Set and SetMany take Tags(...). InvalidateTags makes every
// value with one of the tags a miss on every node: each tag has a random
// generation in L2, a tagged value records its tags' generations and is
// stale once one changed, and each node drops its L1 copies through a local
// index fed only by its own fills. See tags.go for the protocol.
//
// # Errors
//
// A miss is ok == false from Get, not an error. Errors are sentinels
// (ErrNotFound, ErrClosed, ErrRemote, ErrInvalidation, ...) wrapped with
// context: match them with errors.Is.
package tiered
