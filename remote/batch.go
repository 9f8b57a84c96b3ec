package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
)

// Batched lease calls: GetOrLoadMany takes the leases of all its missing
// keys, and later fills them, in one pipeline each (one round trip per
// Redis node), not one call per key. tiered finds these methods through an
// optional interface and falls back to the per-key calls without them.

// AcquireMany tries to take the load lease of every key, as Acquire does
// for one: keys[i] gets a lease carrying tokens[i], expiring at expiresAt,
// if it is empty. won[i] reports whether it did; if not, current[i] is what
// the key holds (KindNone if that was corrupt and has been deleted: read
// again). errs is nil when every key succeeded, else errs[i] is key i's
// error (nil for the keys that succeeded). The commands go in one pipeline.
func (s *Store) AcquireMany(ctx context.Context, keys []string, tokens []uint64, expiresAt time.Time) (current []driver.Entry, won []bool, errs []error) {
	n := len(keys)
	current, won = make([]driver.Entry, n), make([]bool, n)
	if len(tokens) != n {
		return current, won, repeat(n, fmt.Errorf("%w: AcquireMany got %d keys and %d tokens", ErrInvalidOption, n, len(tokens)))
	}
	b := newBatch(n)
	for i, k := range keys {
		b.check(i, s.checkKey(k))
	}
	px := ttl(expiresAt)
	leases := make([][]byte, n)
	for i := range keys {
		leases[i] = Encode(nil, driver.Entry{Kind: driver.KindLease, ExpiresAt: expiresAt, Version: tokens[i]})
	}
	byScript := s.acquireByScript.Load()
	replies := make([]func() (string, error), n)
	send := func(pipe redis.Pipeliner, i int, eval bool) {
		switch {
		case !byScript:
			cmd := pipe.SetArgs(ctx, keys[i], leases[i], redis.SetArgs{Mode: "NX", Get: true, TTL: px})
			replies[i] = cmd.Result
		case eval:
			replies[i] = acquireScript.Eval(ctx, pipe, []string{keys[i]}, leases[i], px.Milliseconds()).Text
		default:
			replies[i] = acquireScript.EvalSha(ctx, pipe, []string{keys[i]}, leases[i], px.Milliseconds()).Text
		}
	}
	b.run(ctx, s.client, send)
	if !byScript && b.all(func(i int) bool { _, err := replies[i](); return err != nil && isSyntaxError(err) }) {
		// Redis older than 7.0 has no SET NX GET: use the script from now on.
		s.acquireByScript.Store(true)
		return s.AcquireMany(ctx, keys, tokens, expiresAt)
	}
	for i := range keys {
		if !b.live(i) {
			continue
		}
		raw, err := replies[i]()
		switch {
		case errors.Is(err, redis.Nil):
			won[i] = true
		case err != nil:
			b.fail(i, s.wrap(err, "acquiring lease on %q", keys[i]))
		default:
			e, err := s.decode(ctx, keys[i], raw)
			current[i] = e
			b.fail(i, err)
		}
	}
	return current, won, b.errs
}

// CompareAndSwapMany does what CompareAndSwap does for each key: keys[i]
// becomes entries[i] only if it holds an entry whose Version is
// versions[i]; swapped[i] reports whether it did. errs is nil when every key
// succeeded, else errs[i] is key i's error. The scripts go in one pipeline.
func (s *Store) CompareAndSwapMany(ctx context.Context, keys []string, versions []uint64, entries []driver.Entry) (swapped []bool, errs []error) {
	n := len(keys)
	swapped = make([]bool, n)
	if len(versions) != n || len(entries) != n {
		return swapped, repeat(n, fmt.Errorf("%w: CompareAndSwapMany got %d keys, %d versions, %d entries", ErrInvalidOption, n, len(versions), len(entries)))
	}
	b := newBatch(n)
	encoded := make([][]byte, n)
	for i, k := range keys {
		if !b.check(i, s.checkKey(k)) {
			continue
		}
		var err error
		encoded[i], err = s.encode(k, entries[i])
		b.check(i, err)
	}
	if s.swap == bySetIfEq {
		s.swapManyNative(ctx, b, keys, versions, encoded, entries, swapped)
		return swapped, b.errs
	}
	replies := make([]func() (int64, error), n)
	send := func(pipe redis.Pipeliner, i int, eval bool) {
		args := []any{tokenBytes(versions[i]), encoded[i], ttl(entries[i].ExpiresAt).Milliseconds()}
		if eval {
			replies[i] = casScript.Eval(ctx, pipe, []string{keys[i]}, args...).Int64
		} else {
			replies[i] = casScript.EvalSha(ctx, pipe, []string{keys[i]}, args...).Int64
		}
	}
	b.run(ctx, s.client, send)
	for i := range keys {
		if !b.live(i) {
			continue
		}
		v, err := replies[i]()
		if err != nil {
			b.fail(i, s.wrap(err, "compare-and-swap of %q", keys[i]))
			continue
		}
		swapped[i] = v == 1
	}
	return swapped, b.errs
}

// swapManyNative is CompareAndSwapMany by SET IFEQ: one pipeline of GETs,
// one of SET IFEQ on the bytes read for the keys holding their version,
// then swapNative alone for a key whose value changed in between.
func (s *Store) swapManyNative(ctx context.Context, b *batch, keys []string, versions []uint64, encoded [][]byte, entries []driver.Entry, swapped []bool) {
	gets := make([]*redis.StringCmd, len(keys))
	pipe := s.client.Pipeline()
	for i := range keys {
		if b.live(i) {
			gets[i] = pipe.Get(ctx, keys[i])
		}
	}
	_, _ = pipe.Exec(ctx) // per-command outcomes below
	sets := make([]*redis.StatusCmd, len(keys))
	pipe = s.client.Pipeline()
	queued := 0
	for i, g := range gets {
		if g == nil {
			continue
		}
		raw, err := g.Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			b.fail(i, s.wrap(err, "compare-and-swap (SET IFEQ) of %q", keys[i]))
		case holds(raw, versions[i]):
			sets[i] = redis.NewStatusCmd(ctx, "SET", keys[i], encoded[i], "IFEQ", raw, "PX", ttl(entries[i].ExpiresAt).Milliseconds())
			_ = pipe.Process(ctx, sets[i])
			queued++
		}
	}
	if queued > 0 {
		_, _ = pipe.Exec(ctx)
	}
	for i, c := range sets {
		if c == nil {
			continue
		}
		err := c.Err()
		if errors.Is(err, redis.Nil) {
			// Changed since the GET: this key alone, again.
			swapped[i], err = s.swapNative(ctx, keys[i], versions[i], encoded[i], ttl(entries[i].ExpiresAt))
		} else if err == nil {
			swapped[i] = true
		}
		if err != nil {
			b.fail(i, s.wrap(err, "compare-and-swap (SET IFEQ) of %q", keys[i]))
		}
	}
}

// batch tracks the per-key errors of a pipelined call.
type batch struct {
	n    int
	errs []error // nil until the first failure
}

func newBatch(n int) *batch { return &batch{n: n} }

// check records err for key i (if not nil) and reports whether i is still
// live.
func (b *batch) check(i int, err error) bool {
	b.fail(i, err)
	return b.live(i)
}

func (b *batch) fail(i int, err error) {
	if err == nil {
		return
	}
	if b.errs == nil {
		b.errs = make([]error, b.n)
	}
	b.errs[i] = err
}

func (b *batch) live(i int) bool { return b.errs == nil || b.errs[i] == nil }

// all reports whether f holds for every live key (and there is one).
func (b *batch) all(f func(i int) bool) bool {
	some := false
	for i := range b.n {
		if !b.live(i) {
			continue
		}
		if !f(i) {
			return false
		}
		some = true
	}
	return some
}

// run sends the command of every live key in one pipeline, and once more,
// by EVAL, the keys whose EVALSHA found no cached script (a server that
// restarted or never saw it). send(pipe, i, eval) queues key i's command
// and keeps its reply; it must use EVAL when eval is set. Errors stay in
// the replies.
func (b *batch) run(ctx context.Context, client Client, send func(pipe redis.Pipeliner, i int, eval bool)) {
	pipe := client.Pipeline()
	var sent []redis.Cmder
	var idx []int
	for i := range b.n {
		if b.live(i) {
			send(pipe, i, false)
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	sent, _ = pipe.Exec(ctx)
	var again []int
	for j, c := range sent {
		if c.Err() != nil && strings.HasPrefix(c.Err().Error(), "NOSCRIPT") {
			again = append(again, idx[j])
		}
	}
	if len(again) == 0 {
		return
	}
	pipe = client.Pipeline()
	for _, i := range again {
		send(pipe, i, true)
	}
	_, _ = pipe.Exec(ctx)
}

func repeat(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}
