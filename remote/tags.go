package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Generations: small counters tiered keeps in L2 for tags (a tag's
// generation, stored under the cache's name + ":\x00tag:" + tag). A
// generation is a random non-zero uint64, stored as its decimal text;
// 0 means "none". Random rather than incremented, so that a generation
// that expired and was created again never repeats an old one.

// ensureGenScript returns the generation under KEYS[1], creating it from
// ARGV[1] if there is none, and makes it live at least ARGV[2] ms.
var ensureGenScript = `
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
local t = redis.call('PTTL', KEYS[1])
if t >= 0 and t < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
`

// bumpGenScript replaces the generation under KEYS[1] by ARGV[1], keeping
// the longer of its remaining life and ARGV[2] ms.
var bumpGenScript = `
local t = redis.call('PTTL', KEYS[1])
local want = tonumber(ARGV[2])
if t > want then want = t end
redis.call('SET', KEYS[1], ARGV[1], 'PX', want)
return 1
`

// Generations returns the generation under each key, in order, 0 where
// there is none (or what is there is not a generation). It sends one MGET
// per hash slot, all in one pipeline.
func (s *Store) Generations(ctx context.Context, keys []string) ([]uint64, error) {
	for _, k := range keys {
		if err := s.checkKey(k); err != nil {
			return nil, err
		}
	}
	out := make([]uint64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	groups, cmds, err := s.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i, g := range groups {
		for j, v := range cmds[i].Val() {
			out[g[j]] = parseGeneration(v)
		}
	}
	return out, nil
}

// EnsureGenerations returns the generation under each key, in order,
// creating a random one where there is none, and makes each live at least
// ttl. One script call per key, all in one pipeline.
func (s *Store) EnsureGenerations(ctx context.Context, keys []string, ttl time.Duration) ([]uint64, error) {
	cmds, err := s.genScripts(ctx, ensureGenScript, keys, ttl)
	if err != nil {
		return nil, fmt.Errorf("remote: creating %d generations: %w", len(keys), err)
	}
	return ensured(keys, cmds)
}

// ensured parses the replies of ensureGenScript on keys.
func ensured(keys []string, cmds []*redis.Cmd) ([]uint64, error) {
	out := make([]uint64, len(keys))
	for i, cmd := range cmds {
		raw, err := cmd.Text()
		if err != nil {
			return nil, fmt.Errorf("remote: generation %q: %w", keys[i], err)
		}
		if out[i], err = strconv.ParseUint(raw, 10, 64); err != nil || out[i] == 0 {
			return nil, fmt.Errorf("remote: %q holds %q, not a generation", keys[i], raw)
		}
	}
	return out, nil
}

// EnsureGenerationsThen is EnsureGenerations of keys followed by
// Generations of then, every generation of then read after those of keys
// exist (tiered reads the tag epoch after the tags' generations). On a
// standalone or Sentinel client it is one pipeline, which Redis runs in
// order on one connection; on a Cluster, where the keys may live on
// different nodes, two round trips one after the other.
func (s *Store) EnsureGenerationsThen(ctx context.Context, keys []string, ttl time.Duration, then []string) (gens, thenGens []uint64, err error) {
	if s.cluster || len(keys) == 0 || len(then) == 0 {
		if gens, err = s.EnsureGenerations(ctx, keys, ttl); err != nil {
			return nil, nil, err
		}
		if thenGens, err = s.Generations(ctx, then); err != nil {
			return nil, nil, err
		}
		return gens, thenGens, nil
	}
	for _, k := range then {
		if err := s.checkKey(k); err != nil {
			return nil, nil, err
		}
	}
	pipe := s.client.Pipeline()
	cmds, err := s.queueGenScripts(ctx, pipe, ensureGenScript, keys, ttl)
	if err != nil {
		return nil, nil, err
	}
	read := pipe.MGet(ctx, then...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, s.wrap(err, "creating %d generations and reading %d", len(keys), len(then))
	}
	if gens, err = ensured(keys, cmds); err != nil {
		return nil, nil, err
	}
	thenGens = make([]uint64, len(then))
	for i, v := range read.Val() {
		thenGens[i] = parseGeneration(v)
	}
	return gens, thenGens, nil
}

// parseGeneration is the generation an MGET reply holds, 0 for none (nil,
// or not a number).
func parseGeneration(v any) uint64 {
	raw, _ := v.(string)
	g, _ := strconv.ParseUint(raw, 10, 64)
	return g
}

// openGenScript is what SET KEYS[1] ARGV[1] NX GET PX ARGV[2] does, for
// Redis older than 7.0 (no NX with GET): the value under KEYS[1], or nil
// after setting it to ARGV[1] living ARGV[2] ms.
var openGenScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// GetOrCreateGeneration returns the generation under key, creating a random
// one living ttl where there is none. Unlike EnsureGenerations it leaves
// the life of an existing generation as it is, so it writes nothing then:
// one SET NX GET, which costs the server what a GET costs when the key
// exists and is not replicated (a script on Redis older than 7.0).
func (s *Store) GetOrCreateGeneration(ctx context.Context, key string, ttl time.Duration) (uint64, error) {
	if ttl < time.Millisecond {
		return 0, fmt.Errorf("%w: generation TTL %v under a millisecond", ErrInvalidOption, ttl)
	}
	if err := s.checkKey(key); err != nil {
		return 0, err
	}
	gen := newGeneration()
	val := strconv.FormatUint(gen, 10)
	var raw string
	var err error
	if !s.acquireByScript.Load() {
		raw, err = s.client.SetArgs(ctx, key, val, redis.SetArgs{Mode: "NX", Get: true, TTL: ttl}).Result()
		if err != nil && isSyntaxError(err) {
			s.acquireByScript.Store(true)
		}
	}
	if s.acquireByScript.Load() {
		raw, err = openGenScript.Run(ctx, s.client, []string{key}, val, ttl.Milliseconds()).Text()
	}
	switch {
	case errors.Is(err, redis.Nil):
		return gen, nil
	case err != nil:
		return 0, s.wrap(err, "reading or creating generation %q", key)
	}
	if g := parseGeneration(raw); g != 0 {
		return g, nil
	}
	return 0, fmt.Errorf("remote: %q holds %q, not a generation", key, raw)
}

// BumpGenerations writes a new random generation under each key, living at
// least ttl (or as long as the old one would have). One script call per
// key, all in one pipeline.
func (s *Store) BumpGenerations(ctx context.Context, keys []string, ttl time.Duration) error {
	if _, err := s.genScripts(ctx, bumpGenScript, keys, ttl); err != nil {
		return fmt.Errorf("remote: bumping %d generations: %w", len(keys), err)
	}
	return nil
}

// genScripts runs script on each key with a fresh random generation and
// ttl as arguments, in one pipeline.
func (s *Store) genScripts(ctx context.Context, script string, keys []string, ttl time.Duration) ([]*redis.Cmd, error) {
	pipe := s.client.Pipeline()
	cmds, err := s.queueGenScripts(ctx, pipe, script, keys, ttl)
	if err != nil || len(cmds) == 0 {
		return nil, err
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	return cmds, nil
}

// queueGenScripts queues script on each key in pipe, as genScripts runs it.
func (s *Store) queueGenScripts(ctx context.Context, pipe redis.Pipeliner, script string, keys []string, ttl time.Duration) ([]*redis.Cmd, error) {
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("%w: generation TTL %v under a millisecond", ErrInvalidOption, ttl)
	}
	for _, k := range keys {
		if err := s.checkKey(k); err != nil {
			return nil, err
		}
	}
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Eval(ctx, script, []string{k}, strconv.FormatUint(newGeneration(), 10), ttl.Milliseconds())
	}
	return cmds, nil
}

// newGeneration returns a random non-zero generation.
func newGeneration() uint64 {
	for {
		if g := rand.Uint64(); g != 0 {
			return g
		}
	}
}
