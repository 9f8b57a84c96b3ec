package local

import (
	"errors"
	"fmt"
	"reflect"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxEntries bounds the store when neither WithMaxEntries nor
	// WithMaxCost is given.
	DefaultMaxEntries = 100_000
	// DefaultBufferItems is ristretto's per-Get buffer size unless
	// WithBufferItems says otherwise.
	DefaultBufferItems = 64
	// Stripes is the number of generation counters.
	Stripes = 4096
)

// ErrInvalidOption is returned by New for an option it cannot use.
var ErrInvalidOption = errors.New("local: invalid option")

// config is what the options set. The zero value means the defaults.
type config struct {
	maxEntries  int64
	maxCost     int64
	cost        any // func(V) int64 for the store's V; checked by New
	costType    reflect.Type
	bufferItems int64
	staleFor    time.Duration
}

// Option configures a Store. Options are applied in order; a later option of
// the same kind replaces an earlier one. New reports a bad value as an error
// wrapping ErrInvalidOption; nothing is clamped.
type Option func(*config) error

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
}

// WithMaxEntries bounds the number of entries (each entry costs 1).
// Default DefaultMaxEntries. n must be positive; it cannot be combined with
// WithMaxCost.
func WithMaxEntries(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("max entries %d must be positive", n)
		}
		c.maxEntries = n
		return nil
	}
}

// WithMaxCost bounds the sum of the entries' costs, in the unit the
// function given to WithCost returns (for instance bytes). Default: unused
// (the store is bounded by entries). n must be positive, WithCost is
// required with it, and it cannot be combined with WithMaxEntries.
func WithMaxCost(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("max cost %d must be positive", n)
		}
		c.maxCost = n
		return nil
	}
}

// WithCost sets the cost of a value when the store is bounded by
// WithMaxCost. V must be the store's value type (New rejects another);
// cost must be cheap and safe for concurrent use; nil is an error. A cost
// below 1 counts as 1. Default: none (every entry costs 1).
func WithCost[V any](cost func(value V) int64) Option {
	return func(c *config) error {
		if cost == nil {
			return invalid("nil cost function")
		}
		c.cost = cost
		c.costType = reflect.TypeFor[V]()
		return nil
	}
}

// WithBufferItems sets ristretto's per-Get buffer size. Default
// DefaultBufferItems; n must be positive.
func WithBufferItems(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("buffer items %d must be positive", n)
		}
		c.bufferItems = n
		return nil
	}
}

// build applies opts and checks that they fit together for a store of V.
func build[V any](opts []Option) (cfg config, cost func(V) int64, err error) {
	for i, o := range opts {
		if o == nil {
			return cfg, nil, invalid("option %d is nil", i)
		}
		if err := o(&cfg); err != nil {
			return cfg, nil, err
		}
	}
	switch {
	case cfg.maxEntries > 0 && cfg.maxCost > 0:
		return cfg, nil, invalid("set WithMaxEntries or WithMaxCost, not both")
	case cfg.maxCost > 0 && cfg.cost == nil:
		return cfg, nil, invalid("WithMaxCost needs WithCost")
	case cfg.maxCost == 0 && cfg.cost != nil:
		return cfg, nil, invalid("WithCost is set but WithMaxCost is not")
	}
	if cfg.cost != nil {
		var ok bool
		if cost, ok = cfg.cost.(func(V) int64); !ok {
			return cfg, nil, invalid("WithCost takes a %v, the store holds %v", cfg.costType, reflect.TypeFor[V]())
		}
	}
	if cfg.bufferItems == 0 {
		cfg.bufferItems = DefaultBufferItems
	}
	return cfg, cost, nil
}

// WithKeepStale keeps every entry for d past its TTL, invisible to Get but
// returned by GetStale, so a cache using tiered.WithStaleIfError can serve
// it when both L2 and the loader fail. The kept entries count towards the
// store's bound. Get then compares each entry's expiry with the clock (a
// few nanoseconds per hit). Default 0: entries end at their TTL and
// GetStale finds nothing. d must not be negative.
func WithKeepStale(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("keep-stale window %v is negative", d)
		}
		c.staleFor = d
		return nil
	}
}
