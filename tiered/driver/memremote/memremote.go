package memremote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// DefaultMaxPayloadBytes is the largest payload a Store accepts by
// default: 1 MiB, what package remote's default envelope limit leaves.
const DefaultMaxPayloadBytes = 1<<20 - 27

// Errors. Match them with errors.Is.
var (
	// ErrInvalidOption is returned by New for a bad option.
	ErrInvalidOption = errors.New("memremote: invalid option")
	// ErrWriteTooLate is returned for a write whose Entry.Deadline had
	// passed on the store's clock: nothing was written.
	ErrWriteTooLate = errors.New("memremote: write past its deadline; not applied")
	// ErrValueTooLarge is returned for a payload over the limit (see
	// WithMaxPayloadBytes); the error is marked driver.UnstorableError.
	ErrValueTooLarge = errors.New("memremote: value too large")
	// ErrLengths is returned (for every key) by a batch call whose slices
	// differ in length.
	ErrLengths = errors.New("memremote: batch slices of different lengths")
)

// Option configures a Store.
type Option func(*Store) error

// WithClock sets the clock of expiries and write deadlines. Default
// driver.SystemClock; nil is an error.
func WithClock(c driver.Clock) Option {
	return func(s *Store) error {
		if c == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		s.clock = c
		return nil
	}
}

// WithMaxPayloadBytes sets the largest payload the store accepts; a write
// of a larger one fails with ErrValueTooLarge. Default
// DefaultMaxPayloadBytes; it must be positive.
func WithMaxPayloadBytes(n int) Option {
	return func(s *Store) error {
		if n <= 0 {
			return fmt.Errorf("%w: max payload bytes %d must be positive", ErrInvalidOption, n)
		}
		s.maxPayload = n
		return nil
	}
}

// Store is an in-memory L2 store. Create it with New. It is safe for
// concurrent use.
type Store struct {
	clock      driver.Clock
	maxPayload int

	mu      sync.Mutex
	entries map[string]driver.Entry // Deadline is never stored
	gens    map[string]generation
}

type generation struct {
	value     uint64
	expiresAt time.Time
}

// New returns an empty Store. A nil option is an error.
func New(opts ...Option) (*Store, error) {
	s := &Store{clock: driver.SystemClock, maxPayload: DefaultMaxPayloadBytes,
		entries: make(map[string]driver.Entry), gens: make(map[string]generation)}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// The contract the store implements.
var (
	_ driver.Remote       = (*Store)(nil)
	_ driver.BatchWriter  = (*Store)(nil)
	_ driver.LeaseBatcher = (*Store)(nil)
	_ driver.TagStore     = (*Store)(nil)
)

// unstorableError marks ErrValueTooLarge as driver.UnstorableError.
type unstorableError struct{ error }

func (e unstorableError) Unwrap() error    { return e.error }
func (e unstorableError) Unstorable() bool { return true }

// get returns the live entry under key, KindNone when there is none (an
// expired entry is deleted). s.mu is held.
func (s *Store) get(key string, now time.Time) driver.Entry {
	e, ok := s.entries[key]
	if !ok {
		return driver.Entry{}
	}
	if !now.Before(e.ExpiresAt) {
		delete(s.entries, key)
		return driver.Entry{}
	}
	e.Payload = clone(e.Payload) // the caller may keep or change it
	return e
}

// check returns the error of writing e under key: too late or too large.
func (s *Store) check(key string, e driver.Entry, now time.Time) error {
	if len(e.Payload) > s.maxPayload {
		return unstorableError{fmt.Errorf("%w: %q has a %d-byte payload, limit %d", ErrValueTooLarge, key, len(e.Payload), s.maxPayload)}
	}
	if !e.Deadline.IsZero() && now.After(e.Deadline) {
		return fmt.Errorf("%w: %q, deadline %v, now %v", ErrWriteTooLate, key, e.Deadline, now)
	}
	return nil
}

// put stores e under key (an entry already past its expiry is no entry).
// s.mu is held.
func (s *Store) put(key string, e driver.Entry, now time.Time) {
	if !now.Before(e.ExpiresAt) {
		delete(s.entries, key)
		return
	}
	e.Payload = clone(e.Payload)
	e.Deadline = time.Time{}
	s.entries[key] = e
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// Get returns the entry under key; Kind is KindNone on a miss.
func (s *Store) Get(ctx context.Context, key string) (driver.Entry, error) {
	if err := ctx.Err(); err != nil {
		return driver.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(key, s.clock.Now()), nil
}

// GetMany returns one entry per key, in order, KindNone for misses.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]driver.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]driver.Entry, len(keys))
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for i, k := range keys {
		out[i] = s.get(k, now)
	}
	return out, nil
}

// Set writes e under key until e.ExpiresAt, replacing whatever is there,
// unless e.Deadline is set and has passed on the store's clock
// (ErrWriteTooLate) or the payload is too large (ErrValueTooLarge).
func (s *Store) Set(ctx context.Context, key string, e driver.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if err := s.check(key, e, now); err != nil {
		return err
	}
	s.put(key, e, now)
	return nil
}

// SetMany is Set of entries[i] under keys[i], one error per key.
func (s *Store) SetMany(ctx context.Context, keys []string, entries []driver.Entry) []error {
	errs := make([]error, len(keys))
	if err := batchErr(ctx, len(keys), len(entries)); err != nil {
		return fill(errs, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for i, k := range keys {
		if errs[i] = s.check(k, entries[i], now); errs[i] == nil {
			s.put(k, entries[i], now)
		}
	}
	return errs
}

// Delete removes keys.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.entries, k)
	}
	return nil
}

// Acquire writes a lease with token until expiresAt if key is empty and
// reports won; otherwise it returns what key holds.
func (s *Store) Acquire(ctx context.Context, key string, token uint64, expiresAt time.Time) (driver.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return driver.Entry{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, won := s.acquire(key, token, expiresAt, s.clock.Now())
	return cur, won, nil
}

func (s *Store) acquire(key string, token uint64, expiresAt, now time.Time) (driver.Entry, bool) {
	if cur := s.get(key, now); cur.Kind != driver.KindNone {
		return cur, false
	}
	s.put(key, driver.Entry{Kind: driver.KindLease, Version: token, ExpiresAt: expiresAt}, now)
	return driver.Entry{}, true
}

// AcquireMany is Acquire of each key, atomically for the whole batch.
func (s *Store) AcquireMany(ctx context.Context, keys []string, tokens []uint64, expiresAt time.Time) ([]driver.Entry, []bool, []error) {
	current, won := make([]driver.Entry, len(keys)), make([]bool, len(keys))
	if err := batchErr(ctx, len(keys), len(tokens)); err != nil {
		return current, won, fill(make([]error, len(keys)), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for i, k := range keys {
		current[i], won[i] = s.acquire(k, tokens[i], expiresAt, now)
	}
	return current, won, nil
}

// CompareAndSwap replaces the entry under key by e only if key holds an
// entry whose Version is version.
func (s *Store) CompareAndSwap(ctx context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cas(key, version, e, s.clock.Now())
}

func (s *Store) cas(key string, version uint64, e driver.Entry, now time.Time) (bool, error) {
	if err := s.check(key, e, now); err != nil {
		return false, err
	}
	if cur := s.get(key, now); cur.Kind == driver.KindNone || cur.Version != version {
		return false, nil
	}
	s.put(key, e, now)
	return true, nil
}

// CompareAndSwapMany is CompareAndSwap of each key, atomically for the
// whole batch.
func (s *Store) CompareAndSwapMany(ctx context.Context, keys []string, versions []uint64, entries []driver.Entry) ([]bool, []error) {
	swapped := make([]bool, len(keys))
	if err := batchErr(ctx, len(keys), len(versions), len(entries)); err != nil {
		return swapped, fill(make([]error, len(keys)), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var errs []error
	for i, k := range keys {
		ok, err := s.cas(k, versions[i], entries[i], now)
		swapped[i] = ok
		if err != nil {
			if errs == nil {
				errs = make([]error, len(keys))
			}
			errs[i] = err
		}
	}
	return swapped, errs
}

// CompareAndDelete deletes key only if it holds an entry whose Version is
// version.
func (s *Store) CompareAndDelete(ctx context.Context, key string, version uint64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.get(key, s.clock.Now()); cur.Kind == driver.KindNone || cur.Version != version {
		return false, nil
	}
	delete(s.entries, key)
	return true, nil
}

// Marshal encodes v as JSON.
func (s *Store) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into v.
func (s *Store) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// gen returns the live generation under key, 0 when there is none. s.mu is
// held.
func (s *Store) gen(key string, now time.Time) generation {
	g, ok := s.gens[key]
	if ok && !now.Before(g.expiresAt) {
		delete(s.gens, key)
		return generation{}
	}
	return g
}

// Generations returns the generation under each key, 0 where none.
func (s *Store) Generations(ctx context.Context, keys []string) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.generations(keys, s.clock.Now()), nil
}

func (s *Store) generations(keys []string, now time.Time) []uint64 {
	out := make([]uint64, len(keys))
	for i, k := range keys {
		out[i] = s.gen(k, now).value
	}
	return out
}

// EnsureGenerations returns the generation under each key, creating a
// random one where there is none, and makes each live at least ttl.
func (s *Store) EnsureGenerations(ctx context.Context, keys []string, ttl time.Duration) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ensure(keys, ttl, s.clock.Now()), nil
}

func (s *Store) ensure(keys []string, ttl time.Duration, now time.Time) []uint64 {
	out := make([]uint64, len(keys))
	for i, k := range keys {
		g := s.gen(k, now)
		if g.value == 0 {
			g.value = newGeneration()
		}
		if until := now.Add(ttl); g.expiresAt.Before(until) {
			g.expiresAt = until
		}
		s.gens[k] = g
		out[i] = g.value
	}
	return out
}

// EnsureGenerationsThen is EnsureGenerations of keys, then Generations of
// then, in one atomic step.
func (s *Store) EnsureGenerationsThen(ctx context.Context, keys []string, ttl time.Duration, then []string) ([]uint64, []uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	gens := s.ensure(keys, ttl, now)
	return gens, s.generations(then, now), nil
}

// GetOrCreateGeneration returns the generation under key, creating one
// living ttl where there is none; it leaves an existing one's life alone.
func (s *Store) GetOrCreateGeneration(ctx context.Context, key string, ttl time.Duration) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if g := s.gen(key, now); g.value != 0 {
		return g.value, nil
	}
	g := generation{value: newGeneration(), expiresAt: now.Add(ttl)}
	s.gens[key] = g
	return g.value, nil
}

// BumpGenerations gives each key a new random generation, living the
// longer of ttl and the old one's remaining life.
func (s *Store) BumpGenerations(ctx context.Context, keys []string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for _, k := range keys {
		old := s.gen(k, now)
		g := generation{value: newGeneration(), expiresAt: now.Add(ttl)}
		if old.expiresAt.After(g.expiresAt) {
			g.expiresAt = old.expiresAt
		}
		for g.value == old.value {
			g.value = newGeneration()
		}
		s.gens[k] = g
	}
	return nil
}

func newGeneration() uint64 {
	for {
		if g := rand.Uint64(); g != 0 {
			return g
		}
	}
}

// batchErr is the error of a batch call before it starts: ctx done, or
// slices of different lengths (n is the keys', others the rest).
func batchErr(ctx context.Context, n int, others ...int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range others {
		if m != n {
			return fmt.Errorf("%w: %d keys, %v", ErrLengths, n, others)
		}
	}
	return nil
}

func fill(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}
