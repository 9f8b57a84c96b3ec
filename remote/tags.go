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
			if raw, ok := v.(string); ok {
				out[g[j]], _ = strconv.ParseUint(raw, 10, 64) // not a number: 0, no generation
			}
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
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("%w: generation TTL %v under a millisecond", ErrInvalidOption, ttl)
	}
	for _, k := range keys {
		if err := s.checkKey(k); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Eval(ctx, script, []string{k}, strconv.FormatUint(newGeneration(), 10), ttl.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
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
