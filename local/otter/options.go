package otter

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
	// Stripes is the number of generation counters.
	Stripes = l1core.Stripes
)

// ErrInvalidOption is returned by New for an option it cannot use.
var ErrInvalidOption = errors.New("otter: invalid option")

// Option configures a Store. Options are applied in order; a later option of
// the same kind replaces an earlier one. New reports a bad value as an error
// wrapping ErrInvalidOption; nothing is clamped.
type Option func(*l1core.Config) error

// WithMaxEntries bounds the number of entries. Default DefaultMaxEntries. n
// must be positive (and fit an int); it cannot be combined with WithMaxCost.
func WithMaxEntries(n int64) Option { return Option(l1core.MaxEntries(n)) }

// WithMaxCost bounds the sum of the entries' costs, in the unit the function
// given to WithCost returns (for instance bytes). Default: unused (the store
// is bounded by entries). n must be positive, WithCost is required with it,
// and it cannot be combined with WithMaxEntries.
func WithMaxCost(n int64) Option { return Option(l1core.MaxCost(n)) }

// WithCost sets the cost of a value when the store is bounded by
// WithMaxCost. V must be the store's value type (New rejects another); cost
// must be cheap and safe for concurrent use; nil is an error. A cost below 1
// counts as 1, one above math.MaxUint32 as math.MaxUint32 (otter's weights
// are 32-bit). Default: none.
func WithCost[V any](cost func(value V) int64) Option { return Option(l1core.Cost(cost)) }

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
	return cfg, cost, nil
}
