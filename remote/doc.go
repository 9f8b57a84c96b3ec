// Package remote is the L2 store of tiercache on go-redis v9: a standalone
// server, Sentinel (a failover *redis.Client) or a Cluster, unchanged.
//
// # Value envelope
//
// Every value is stored in a small binary envelope (see Encode) holding a
// format version, the kind (value, not-found or lease), the absolute expiry,
// how long the load took, a random version id and the payload encoded with a
// Codec (JSON by default). The expiry in the envelope lets a reader compute
// the remaining TTL without a PTTL round trip. A value under one of the
// store's keys that is not a valid envelope (corrupt, truncated, written by
// another program or a future format) is treated as a miss: it is deleted so
// the next read reloads it, and counted in Stats.Corrupt. It never panics.
//
// # Leases
//
// Acquire takes a key's load lease with SET NX GET PX (a Lua script where the
// server is older than Redis 7). CompareAndSwap and CompareAndDelete are Lua
// scripts that act only if the key still holds an entry with the caller's
// version id; with the lease token as version they are the conditional fill
// and the release of a load, so a Delete or Set that ran during a load (and
// removed the lease) makes the loader's fill a no-op instead of writing a
// stale value back.
//
// # Start-up probe
//
// New sends, in one pipeline, every command the store needs in a form that
// changes nothing, and fails (ErrPermission) naming each one the Redis ACL
// user may not run; the same round trip finds out whether the server has
// SET NX GET, SET IFEQ, DELEX and DELIFEQ (Capabilities). Where it has SET
// IFEQ, fills use GET then SET IFEQ on the bytes read instead of the
// script, and lease releases DELEX IFEQ or DELIFEQ where it has one: the
// same outcome as the scripts, in two commands instead of one. A Redis that
// does not answer in time does not fail New; the store uses the scripts.
//
// # Batches
//
// GetMany and Delete group keys by Redis Cluster hash slot and send one MGET
// or DEL per slot in a single pipeline, so a batch costs one round trip per
// node on a Cluster and one on a standalone server.
//
// A Store implements driver.Remote and its optional batch, lease, tag,
// shard and carrying interfaces (package tiered/driver).
// Its methods are safe for concurrent use.
package remote
