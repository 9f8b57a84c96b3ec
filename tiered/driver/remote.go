package driver

import (
	"context"
	"time"
)

// Remote is the L2 store shared by every node: package remote provides it on
// go-redis (standalone, Sentinel and Cluster). Keys passed to it are already
// namespaced by the cache. Implementations must be safe for concurrent use,
// and each call on one key is atomic (a Redis command or script is).
//
// An entry read back is the entry written: its Kind, Payload, Version and
// LoadTime, and ExpiresAt to the millisecond; Deadline is not stored. An
// entry is gone (a miss, an empty key for Acquire) once its ExpiresAt has
// passed on the store's clock. Package tiered/drivertest (RunRemote)
// checks these rules and those of the optional interfaces.
type Remote interface {
	// Get returns the entry under key; Kind is KindNone on a miss. A corrupt
	// or foreign value under the key is a miss (the adapter deletes it and
	// counts it).
	Get(ctx context.Context, key string) (Entry, error)
	// GetMany returns one entry per key, in order, with KindNone for misses.
	GetMany(ctx context.Context, keys []string) ([]Entry, error)
	// Set writes e under key until e.ExpiresAt, replacing whatever is there
	// (including a lease), unless e.Deadline is set and has passed on the
	// server's clock: then it writes nothing and returns an error.
	Set(ctx context.Context, key string, e Entry) error
	// Delete removes keys (and with them any lease in flight).
	Delete(ctx context.Context, keys ...string) error
	// Acquire reads key and takes its load lease in one step: if the key
	// is empty it writes a lease entry {KindLease, Version: token,
	// ExpiresAt: expiresAt} and reports won; otherwise it writes nothing
	// and current is what the key holds (a value, a marker, or another's
	// lease). Of concurrent Acquires of an empty key exactly one wins. A
	// corrupt value under the key is deleted, as for Get: then either the
	// lease replaces it (won) or current is KindNone with won false and the
	// caller tries again (package remote's Store). The cache's first L2
	// read of a GetOrLoad is an Acquire, so it must cost what a Get costs.
	Acquire(ctx context.Context, key string, token uint64, expiresAt time.Time) (current Entry, won bool, err error)
	// CompareAndSwap replaces the entry under key by e only if the key holds
	// an entry (of any kind) whose Version is version, and reports whether
	// it did; an empty key matches no version, not even 0. With a lease
	// token it is the conditional fill of a load, a no-op once a Set or
	// Delete replaced the lease. A refusal is not an error.
	CompareAndSwap(ctx context.Context, key string, version uint64, e Entry) (bool, error)
	// CompareAndDelete deletes key only if it holds an entry whose Version is
	// version (an empty key matches none), and reports whether it did.
	CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error)
	// Marshal encodes a value with the store's codec.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data produced by Marshal into v (a pointer).
	Unmarshal(data []byte, v any) error
}

// BatchWriter is the optional batch write of a Remote (package remote's
// Store pipelines one fenced SET per key, a round trip per node): it does
// Set of entries[i] under keys[i] for each i, each key fenced by its own
// Deadline. errs always has one error (or nil) per key: a key that fails
// (too late, unstorable) fails alone.
//
// Without it, the cache writes a batch with Set, a few keys at a time.
type BatchWriter interface {
	SetMany(ctx context.Context, keys []string, entries []Entry) (errs []error)
}

// LeaseBatcher is the optional pipelined lease calls of a Remote (package
// remote's Store offers them): AcquireMany and CompareAndSwapMany do, key
// by key, what Acquire and CompareAndSwap do (keys[i] with tokens[i], or
// versions[i] and entries[i]), in one round trip per node; current, won
// and swapped have one element per key. errs is nil when every key
// succeeded, else one error (or nil) per key.
//
// Without it, the cache takes and fills a batch's leases key by key, a
// few at a time.
type LeaseBatcher interface {
	AcquireMany(ctx context.Context, keys []string, tokens []uint64, expiresAt time.Time) (current []Entry, won []bool, errs []error)
	CompareAndSwapMany(ctx context.Context, keys []string, versions []uint64, entries []Entry) (swapped []bool, errs []error)
}

// TagStore is the optional tag generations of a Remote (package remote's
// Store keeps them in Redis). Generations are random non-zero numbers; 0
// means none. Each generation is created once: concurrent creators of a
// missing one (EnsureGenerations, GetOrCreateGeneration) all get the
// same. A generation lives until its TTL passes, then reads as 0.
//
// Without it, the cache refuses tags: tagged writes and loads and
// InvalidateTags return tiered.ErrTagsUnsupported.
type TagStore interface {
	// Generations returns the generation under each key, 0 where none.
	Generations(ctx context.Context, keys []string) ([]uint64, error)
	// EnsureGenerations returns the generation under each key, creating
	// one where there is none, and makes each live at least ttl.
	EnsureGenerations(ctx context.Context, keys []string, ttl time.Duration) ([]uint64, error)
	// EnsureGenerationsThen is EnsureGenerations of keys, then Generations
	// of then, read after those of keys exist (a key of then that is in
	// keys reads the generation just ensured).
	EnsureGenerationsThen(ctx context.Context, keys []string, ttl time.Duration, then []string) (gens, thenGens []uint64, err error)
	// GetOrCreateGeneration returns the generation under key, creating one
	// living ttl where there is none; an existing one keeps its life.
	GetOrCreateGeneration(ctx context.Context, key string, ttl time.Duration) (uint64, error)
	// BumpGenerations gives each key a new generation, different from the
	// old one, living at least ttl.
	BumpGenerations(ctx context.Context, keys []string, ttl time.Duration) error
}

// Sharder is the optional shard map of a Remote that spreads keys over
// shards (package remote's Store on a Cluster): Shard returns a name of
// the shard serving key, "" for a single shard. Each shard gets its own
// circuit breaker. Shard does no I/O once the shard map is known and
// returns the same name for a key while the map is unchanged.
//
// Without it, the cache keeps one breaker for the whole store.
type Sharder interface {
	Shard(key string) string
}

// PublishCarrier is the optional interface of a Remote that can carry a
// bus message in the round trip of a one-key write (package remote's
// Store does): the write, then on the same connection the message, so the
// server runs the write first. A CarryingBus decides whether it can carry
// a message through the store (see Carrier).
//
// Without it, the cache publishes a write's invalidation after the write,
// a second round trip.
type PublishCarrier interface {
	// Carrier names the connection pool the store writes through; it is
	// the same on every call.
	Carrier() Carrier
	// SetAndPublish is Set of e under key, then the message.
	SetAndPublish(ctx context.Context, key string, e Entry, command, channel string, payload []byte) (setErr, pubErr error)
	// DeleteAndPublish is Delete of key, then the message.
	DeleteAndPublish(ctx context.Context, key string, command, channel string, payload []byte) (delErr, pubErr error)
}

// Carrier names the connection pool of a PublishCarrier: a bus carries a
// message through a store only if the store's Carrier is the bus's own
// (the message must reach the server the bus's subscribers listen on, in
// order with the bus's other messages). Two Carriers are equal if and
// only if they name the same pool.
type Carrier struct {
	pool any // comparable: the pool's pointer
}

// NewCarrier returns the Carrier naming pool, a pointer to the pool (for
// go-redis, its client).
func NewCarrier(pool any) Carrier { return Carrier{pool: pool} }

// UnavailableError is the mark of a Remote error that says the shard
// serving the key is unavailable (connection refused or reset,
// CLUSTERDOWN, LOADING, TRYAGAIN, MASTERDOWN): the cache counts it against
// the shard's circuit breaker, as it does a call that outlived the remote
// timeout, unless it also carries the AnsweredError mark. Package remote
// marks its errors so. Any other error (an error reply that proves the
// server is up, a key too long, the caller's own cancellation) is neutral:
// it neither opens nor closes the breaker.
type UnavailableError interface {
	error
	Unavailable() bool
}

// AnsweredError is the mark of a Remote error that the shard's node
// answered: the call failed for a reason that says nothing about that
// node's health. Package remote marks so a Cluster's CLUSTERDOWN reply
// (with cluster-require-full-coverage yes, Redis' default, every primary
// refuses every key from the moment another shard's primary is marked
// failed until its replica is promoted), and a call that ran out of time
// while the Cluster was refusing so (go-redis retries the refusal until
// the deadline). The cache neither opens nor closes the shard's circuit
// breaker on it, even when it also carries the UnavailableError mark or
// outlived the remote timeout: one shard's failover must not open the
// breakers of the shards that kept answering.
type AnsweredError interface {
	error
	Answered() bool
}

// UnstorableError is the mark of a Remote error that says the value can
// never be stored (too large for the store): the cache does not count it
// against the breaker, and a load under a lease replaces the lease by a
// KindUnstorable marker so that other nodes load for themselves.
type UnstorableError interface {
	error
	Unstorable() bool
}
