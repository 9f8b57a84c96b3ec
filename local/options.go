package local

import (
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/internal/l1core"
)

// Defaults of the options.
const (
	// DefaultMaxEntries bounds the store when neither WithMaxEntries nor
	// WithMaxCost is given.
	DefaultMaxEntries = l1core.DefaultMaxEntries
	// DefaultBufferItems is ristretto's per-Get buffer size unless
	// WithBufferItems says otherwise.
	DefaultBufferItems = 64
	// DefaultExpectedEntries is how many entries a store bounded by
	// WithMaxCost is assumed to hold when full, unless WithExpectedEntries
	// says otherwise (or the cost bound is smaller).
	DefaultExpectedEntries = 100_000
	// countersPerEntry is ristretto's advice: track the frequency of ten
	// times as many keys as the cache holds.
	countersPerEntry = 10
	// Stripes is the number of generation counters.
	Stripes = l1core.Stripes
)

// ErrInvalidOption is returned by New for an option it cannot use.
var ErrInvalidOption = errors.New("local: invalid option")

// Option configures a Store. Options are applied in order; a later option of
// the same kind replaces an earlier one. New reports a bad value as an error
// wrapping ErrInvalidOption; nothing is clamped.
type Option func(*l1core.Config) error

// WithMaxEntries bounds the number of entries (each entry costs 1).
// Default DefaultMaxEntries. n must be positive; it cannot be combined with
// WithMaxCost.
func WithMaxEntries(n int64) Option { return Option(l1core.MaxEntries(n)) }

// WithMaxCost bounds the sum of the entries' costs, in the unit the
// function given to WithCost returns (for instance bytes). Default: unused
// (the store is bounded by entries). n must be positive, WithCost is
// required with it, and it cannot be combined with WithMaxEntries.
func WithMaxCost(n int64) Option { return Option(l1core.MaxCost(n)) }

// WithCost sets the cost of a value when the store is bounded by
// WithMaxCost. V must be the store's value type (New rejects another);
// cost must be cheap and safe for concurrent use; nil is an error. A cost
// below 1 counts as 1. Default: none (every entry costs 1).
func WithCost[V any](cost func(value V) int64) Option { return Option(l1core.Cost(cost)) }

// WithBufferItems sets ristretto's per-Get buffer size. Default
// DefaultBufferItems; n must be positive.
func WithBufferItems(n int64) Option {
	return func(c *l1core.Config) error {
		if n <= 0 {
			return fmt.Errorf("buffer items %d must be positive", n)
		}
		c.BufferItems = n
		return nil
	}
}

// WithExpectedEntries sizes the admission policy of a store bounded by
// WithMaxCost: n is about how many entries it holds when full. ristretto
// allocates its frequency counters up front, 10 per expected entry at about
// 5 bytes each (0.5 KB per entry, 48 MB for a million), whatever the store
// then holds. Default: min(max cost, DefaultExpectedEntries), about 4.6 MB.
// More entries than expected only make admission less precise, never
// wrong. n must be positive and it needs WithMaxCost (with WithMaxEntries
// the bound is the expected count).
func WithExpectedEntries(n int64) Option {
	return func(c *l1core.Config) error {
		if n <= 0 {
			return fmt.Errorf("expected entries %d must be positive", n)
		}
		c.ExpectedEntries = n
		return nil
	}
}

// WithKeepStale keeps every entry for d past its TTL, invisible to Get but
// returned by GetStale, so a cache using tiered.WithStaleIfError can serve
// it when both L2 and the loader fail. The kept entries count towards the
// store's bound. Get then compares each entry's expiry with the clock (a
// few nanoseconds per hit). Default 0: entries end at their TTL and
// GetStale finds nothing. d must not be negative.
func WithKeepStale(d time.Duration) Option { return Option(l1core.KeepStale(d)) }

// build applies opts and checks that they fit together for a store of V.
func build[V any](opts []Option) (l1core.Config, func(V) int64, error) {
	cfg, cost, err := l1core.Build[V](opts)
	if err != nil {
		return cfg, nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	if cfg.ExpectedEntries > 0 && cfg.MaxCost == 0 {
		return cfg, nil, fmt.Errorf("%w: WithExpectedEntries needs WithMaxCost (WithMaxEntries already says how many entries to expect)", ErrInvalidOption)
	}
	if cfg.BufferItems == 0 {
		cfg.BufferItems = DefaultBufferItems
	}
	if cfg.MaxCost > 0 && cfg.ExpectedEntries == 0 {
		cfg.ExpectedEntries = min(cfg.MaxCost, DefaultExpectedEntries)
	}
	return cfg, cost, nil
}
