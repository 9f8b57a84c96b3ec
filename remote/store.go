package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
)

// Defaults of the options.
const (
	// DefaultMaxKeyBytes is the longest key the store accepts, in bytes,
	// including the namespace prefix a cache adds.
	DefaultMaxKeyBytes = 1024
	// DefaultMaxValueBytes is the largest encoded envelope the store writes.
	DefaultMaxValueBytes = 1 << 20
)

// Errors. Match them with errors.Is.
var (
	ErrEmptyKey      = errors.New("remote: empty key")
	ErrKeyTooLong    = errors.New("remote: key too long")
	ErrValueTooLarge = errors.New("remote: value too large")
	ErrInvalidOption = errors.New("remote: invalid option")
	// ErrPermission marks a refusal by Redis that no retry fixes: a missing
	// ACL permission (NOPERM; the message says NOPERM and names the command,
	// or says the key was refused) or a wrong password (WRONGPASS, NOAUTH;
	// the message says the credentials were refused). It is not
	// unavailability: the server answered. New returns it when its probe
	// meets such a refusal. See docs/deploying.md (ACL) for the commands
	// tiercache needs.
	ErrPermission = errors.New("remote: refused by Redis")
)

// Client is the part of go-redis the store uses. *redis.Client (standalone
// or Sentinel failover) and *redis.ClusterClient satisfy it.
type Client interface {
	Get(ctx context.Context, key string) *redis.StringCmd
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	SetArgs(ctx context.Context, key string, value any, a redis.SetArgs) *redis.StatusCmd
	Del(ctx context.Context, keys ...string) *redis.IntCmd
	PTTL(ctx context.Context, key string) *redis.DurationCmd
	Process(ctx context.Context, cmd redis.Cmder) error
	Pipeline() redis.Pipeliner
	redis.Scripter
}

// Option configures a Store.
type Option func(*Store) error

// WithCodec sets the codec of payloads. Default: JSON. Nil is an error.
func WithCodec(c Codec) Option {
	return func(s *Store) error {
		if c == nil {
			return fmt.Errorf("%w: nil codec", ErrInvalidOption)
		}
		s.codec = c
		return nil
	}
}

// WithMaxKeyBytes sets the longest key accepted. Default DefaultMaxKeyBytes;
// it must be positive.
func WithMaxKeyBytes(n int) Option {
	return func(s *Store) error {
		if n <= 0 {
			return fmt.Errorf("%w: max key bytes %d must be positive", ErrInvalidOption, n)
		}
		s.maxKey = n
		return nil
	}
}

// WithMaxValueBytes sets the largest encoded envelope written. Default
// DefaultMaxValueBytes; it must be larger than the 27-byte envelope header.
func WithMaxValueBytes(n int) Option {
	return func(s *Store) error {
		if n <= headerSize {
			return fmt.Errorf("%w: max value bytes %d must exceed the %d-byte header", ErrInvalidOption, n, headerSize)
		}
		s.maxValue = n
		return nil
	}
}

// Store is an L2 store on Redis. Create it with New.
type Store struct {
	client   Client
	cluster  bool
	codec    Codec
	maxKey   int
	maxValue int

	// acquireByScript is set once the server rejected SET NX GET (Redis
	// older than 7.0); Acquire then uses a Lua script.
	acquireByScript atomic.Bool
	corrupt         atomic.Uint64
	// unscripted counts lease releases done by GET and DEL because Redis
	// refused the script (see CompareAndDelete).
	unscripted atomic.Uint64

	// What the start-up probe found (probe.go) and the compare-and-set
	// commands chosen from it.
	probeKey      string
	startTimeout  time.Duration
	caps          Capabilities
	swap, release casMethod

	// clusterClient is client as a Cluster client, nil otherwise; reloader
	// is what reloads its slot map (the same client; a field for tests).
	clusterClient *redis.ClusterClient
	reloader      interface{ ReloadState(context.Context) }
	reloadEvery   time.Duration
	lastReload    atomic.Int64 // unix nanos of the last reload asked for
	reloads       atomic.Uint64
	shards        shardMap    // Shard's memory of each slot's primary
	down          clusterDown // CLUSTERDOWN replies seen
}

// WithReloadInterval sets the least time between two reloads of a Cluster
// client's slot map that the store asks for after a connection error,
// MOVED, READONLY or CLUSTERDOWN (go-redis itself reloads only
// periodically), so writes reach a promoted replica soon after a failover.
// Default DefaultReloadInterval (500 ms); it must be positive. It has no
// effect on other clients.
func WithReloadInterval(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("%w: reload interval %v must be positive", ErrInvalidOption, d)
		}
		s.reloadEvery = d
		return nil
	}
}

// New returns a Store on client. It probes the server first, in one round
// trip bounded by WithStartTimeout: it sends every command the store needs
// (GET, MGET, SET, DEL, PTTL, PEXPIRE, TIME, EVAL, EVALSHA) in a form
// that changes nothing, and fails with an error matching ErrPermission
// that names every command the Redis user may not run (NOPERM), or says
// the credentials were refused (WRONGPASS, NOAUTH). The same round trip
// finds out whether the server has SET NX GET, SET IFEQ, DELEX and
// DELIFEQ (see Capabilities): with SET IFEQ and DELEX or DELIFEQ, fills
// and lease releases use them instead of the Lua scripts.
//
// A Redis that is down or slow when the application starts must not keep
// it from starting (the cache then serves from L1 and the loader): a
// probe that gets no answer does not fail New, and the store uses the
// scripts. A refusal that appears later (the user's rights revoked) is
// returned by the call it refuses, matching ErrPermission; tiered passes
// it to the caller (writes) or its error handler (reads), and never counts
// it as unavailability. A nil option is an error.
func New(client Client, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	s := &Store{client: client, codec: JSON{}, maxKey: DefaultMaxKeyBytes, maxValue: DefaultMaxValueBytes,
		reloadEvery: DefaultReloadInterval, probeKey: DefaultProbeKey, startTimeout: DefaultStartTimeout}
	if cc, ok := client.(*redis.ClusterClient); ok {
		s.cluster, s.clusterClient, s.reloader = true, cc, cc
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if err := s.probe(); err != nil {
		return nil, err
	}
	return s, nil
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	// Corrupt counts values found under the store's keys that were not valid
	// envelopes; each was deleted and treated as a miss.
	Corrupt uint64
	// SlotReloads counts the Cluster slot map reloads the store asked for
	// after errors (see WithReloadInterval).
	SlotReloads uint64
	// UnscriptedReleases counts compare-and-deletes done by GET and DEL
	// because Redis refused the script with NOPERM (see CompareAndDelete).
	UnscriptedReleases uint64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{Corrupt: s.corrupt.Load(), SlotReloads: s.reloads.Load(), UnscriptedReleases: s.unscripted.Load()}
}

// Marshal encodes v with the store's codec.
func (s *Store) Marshal(v any) ([]byte, error) { return s.codec.Marshal(v) }

// Unmarshal decodes data into v with the store's codec.
func (s *Store) Unmarshal(data []byte, v any) error { return s.codec.Unmarshal(data, v) }

func (s *Store) checkKey(key string) error {
	switch {
	case key == "":
		return ErrEmptyKey
	case len(key) > s.maxKey:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLong, len(key), s.maxKey)
	}
	return nil
}

func (s *Store) encode(key string, e driver.Entry) ([]byte, error) {
	if size := headerSize + len(e.Payload); size > s.maxValue {
		return nil, unstorableError{fmt.Errorf("%w: %q encodes to %d bytes, limit %d", ErrValueTooLarge, key, size, s.maxValue)}
	}
	return Encode(make([]byte, 0, headerSize+len(e.Payload)), e), nil
}

// ttl returns the time left until t, at least one millisecond (Redis' unit).
func ttl(t time.Time) time.Duration { return max(time.Until(t), time.Millisecond) }

// decode parses raw, read under key. A corrupt value is deleted, counted and
// reported as a miss; only a failure to delete it is an error.
func (s *Store) decode(ctx context.Context, key string, raw string) (driver.Entry, error) {
	e, err := Decode([]byte(raw))
	if err == nil {
		return e, nil
	}
	s.corrupt.Add(1)
	if derr := s.client.Del(ctx, key).Err(); derr != nil {
		return driver.Entry{}, s.wrap(derr, "deleting corrupt value under %q", key)
	}
	return driver.Entry{}, nil
}

// Get returns the entry under key, with Kind KindNone on a miss.
func (s *Store) Get(ctx context.Context, key string) (driver.Entry, error) {
	if err := s.checkKey(key); err != nil {
		return driver.Entry{}, err
	}
	raw, err := s.client.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return driver.Entry{}, nil
	}
	if err != nil {
		return driver.Entry{}, s.wrap(err, "GET %q", key)
	}
	return s.decode(ctx, key, raw)
}

// Set writes e under key until e.ExpiresAt, replacing whatever is there.
// With e.Deadline set the write is fenced: Redis refuses it (ErrWriteTooLate)
// once its clock is past the deadline.
func (s *Store) Set(ctx context.Context, key string, e driver.Entry) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	b, err := s.encode(key, e)
	if err != nil {
		return err
	}
	if err := s.set(ctx, key, b, e); err != nil {
		return s.wrap(err, "SET %q", key)
	}
	return nil
}

// groups splits keys into batches that one command may carry: one per hash
// slot on a Cluster, a single batch otherwise. Each batch holds indexes into
// keys.
func (s *Store) groups(keys []string) [][]int {
	if !s.cluster {
		all := make([]int, len(keys))
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	bySlot := make(map[uint16][]int)
	var order []uint16
	for i, k := range keys {
		sl := slot(k)
		if _, ok := bySlot[sl]; !ok {
			order = append(order, sl)
		}
		bySlot[sl] = append(bySlot[sl], i)
	}
	out := make([][]int, len(order))
	for i, sl := range order {
		out[i] = bySlot[sl]
	}
	return out
}

func pick(keys []string, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = keys[j]
	}
	return out
}

// mget reads keys (checked, not empty) with one MGET per hash slot, all in
// one pipeline: cmds[i] holds the values of the keys at groups[i].
func (s *Store) mget(ctx context.Context, keys []string) (groups [][]int, cmds []*redis.SliceCmd, err error) {
	groups = s.groups(keys)
	pipe := s.client.Pipeline()
	cmds = make([]*redis.SliceCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.MGet(ctx, pick(keys, g)...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, s.wrap(err, "MGET of %d keys", len(keys))
	}
	return groups, cmds, nil
}

// GetMany returns one entry per key, in order, with KindNone for misses. It
// sends one MGET per hash slot, all in one pipeline.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]driver.Entry, error) {
	for _, k := range keys {
		if err := s.checkKey(k); err != nil {
			return nil, err
		}
	}
	out := make([]driver.Entry, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	groups, cmds, err := s.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	var corrupt []string
	for i, g := range groups {
		for j, v := range cmds[i].Val() {
			raw, ok := v.(string)
			if !ok {
				continue // nil: a miss
			}
			e, err := Decode([]byte(raw))
			if err != nil {
				s.corrupt.Add(1)
				corrupt = append(corrupt, keys[g[j]])
				continue
			}
			out[g[j]] = e
		}
	}
	if len(corrupt) > 0 {
		if err := s.Delete(ctx, corrupt...); err != nil {
			return nil, fmt.Errorf("remote: deleting corrupt values: %w", err)
		}
	}
	return out, nil
}

// Delete removes keys, one DEL per hash slot, all in one pipeline.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := s.checkKey(k); err != nil {
			return err
		}
	}
	switch len(keys) {
	case 0:
		return nil
	case 1:
		if err := s.client.Del(ctx, keys[0]).Err(); err != nil {
			return s.wrap(err, "DEL %q", keys[0])
		}
		return nil
	}
	pipe := s.client.Pipeline()
	for _, g := range s.groups(keys) {
		pipe.Del(ctx, pick(keys, g)...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return s.wrap(err, "DEL of %d keys", len(keys))
	}
	return nil
}

// acquireScript is SET NX GET for servers older than Redis 7.0.
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// holdsVersion is the Lua test that KEYS[1] holds an envelope of this
// format whose version id is ARGV[1] (8 bytes, big-endian, at offset 19).
const holdsVersion = `
local v = redis.call('GET', KEYS[1])
local held = v and string.len(v) >= 27 and string.byte(v, 1) == 0xC7
  and string.byte(v, 2) == 1 and string.sub(v, 20, 27) == ARGV[1]
`

var casScript = redis.NewScript(holdsVersion + `
if not held then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

var cadScript = redis.NewScript(holdsVersion + `
if not held then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

func tokenBytes(token uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, token)
}

// Acquire takes the load lease on key if the key is empty: it writes a lease
// envelope carrying token, expiring at expiresAt. won reports whether it did;
// if not, current is what the key holds (KindNone if that was corrupt and has
// been deleted: try again).
func (s *Store) Acquire(ctx context.Context, key string, token uint64, expiresAt time.Time) (current driver.Entry, won bool, err error) {
	if err := s.checkKey(key); err != nil {
		return driver.Entry{}, false, err
	}
	lease := Encode(nil, driver.Entry{Kind: driver.KindLease, ExpiresAt: expiresAt, Version: token})
	var raw string
	if !s.acquireByScript.Load() {
		raw, err = s.client.SetArgs(ctx, key, lease, redis.SetArgs{Mode: "NX", Get: true, TTL: ttl(expiresAt)}).Result()
		if err != nil && isSyntaxError(err) {
			s.acquireByScript.Store(true)
		}
	}
	if s.acquireByScript.Load() {
		raw, err = acquireScript.Run(ctx, s.client, []string{key}, lease, ttl(expiresAt).Milliseconds()).Text()
	}
	if errors.Is(err, redis.Nil) {
		return driver.Entry{}, true, nil
	}
	if err != nil {
		return driver.Entry{}, false, s.wrap(err, "acquiring lease on %q", key)
	}
	current, err = s.decode(ctx, key, raw)
	return current, false, err
}

func isSyntaxError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(strings.ToLower(re.Error()), "syntax")
}

// CompareAndSwap replaces the entry under key by e only if the key holds an
// entry whose Version is version, and reports whether it did. With a lease
// token as version, it is the conditional fill of a load: a Delete or Set
// that removed the lease makes it a no-op.
func (s *Store) CompareAndSwap(ctx context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	if err := s.checkKey(key); err != nil {
		return false, err
	}
	b, err := s.encode(key, e)
	if err != nil {
		return false, err
	}
	if s.swap == bySetIfEq {
		ok, err := s.swapNative(ctx, key, version, b, ttl(e.ExpiresAt))
		if err != nil {
			return false, s.wrap(err, "compare-and-swap (SET IFEQ) of %q", key)
		}
		return ok, nil
	}
	n, err := casScript.Run(ctx, s.client, []string{key}, tokenBytes(version), b, ttl(e.ExpiresAt).Milliseconds()).Int()
	if err != nil {
		return false, s.wrap(err, "compare-and-swap of %q", key)
	}
	return n == 1, nil
}

// CompareAndDelete deletes key only if it holds an entry whose Version is
// version, and reports whether it did.
//
// When Redis refuses the script with NOPERM (scripting revoked after New),
// it deletes by GET, comparing the version, then DEL, so that a load
// whose fill was refused still releases its lease and other nodes do not
// wait for the lease's TTL. That is not atomic: a write landing between
// the GET and the DEL is deleted too, which costs a miss, never a stale
// value. Such deletes are counted in Stats.UnscriptedReleases.
func (s *Store) CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error) {
	if err := s.checkKey(key); err != nil {
		return false, err
	}
	if s.release != byScript {
		ok, err := s.deleteNative(ctx, key, version, s.release)
		if err != nil {
			return false, s.wrap(err, "compare-and-delete (%s) of %q", s.release, key)
		}
		return ok, nil
	}
	n, err := cadScript.Run(ctx, s.client, []string{key}, tokenBytes(version)).Int()
	if err != nil && isScriptRefused(err) {
		ok, derr := s.deleteUnscripted(ctx, key, version)
		if derr != nil {
			return false, s.wrap(derr, "compare-and-delete of %q by GET and DEL (the script: %v)", key, err)
		}
		return ok, nil
	}
	if err != nil {
		return false, s.wrap(err, "compare-and-delete of %q", key)
	}
	return n == 1, nil
}

// The contract the store implements (package tiered/driver).
var (
	_ driver.Remote         = (*Store)(nil)
	_ driver.BatchWriter    = (*Store)(nil)
	_ driver.LeaseBatcher   = (*Store)(nil)
	_ driver.TagStore       = (*Store)(nil)
	_ driver.Sharder        = (*Store)(nil)
	_ driver.PublishCarrier = (*Store)(nil)
)
