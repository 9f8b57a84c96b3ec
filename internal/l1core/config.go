package l1core

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"
)

// DefaultMaxEntries bounds a store when neither a bound of entries nor one of
// cost is given.
const DefaultMaxEntries = 100_000

// Config is what a store's options set. The zero value means the defaults.
type Config struct {
	MaxEntries int64
	MaxCost    int64
	// cost is a func(V) int64 for the store's V, checked by Build.
	cost     any
	costType reflect.Type
	// StaleFor is the keep-stale window (0: entries end at their TTL).
	StaleFor time.Duration
	// BufferItems is ristretto's per-Get buffer size (package local only).
	BufferItems int64
	// ExpectedEntries sizes ristretto's admission counters of a store
	// bounded by cost (package local only; 0: the default).
	ExpectedEntries int64
}

// Option sets a field of Config, or returns why it cannot.
type Option = func(*Config) error

// MaxEntries bounds the number of entries; n must be positive.
func MaxEntries(n int64) Option {
	return func(c *Config) error {
		if n <= 0 || n > math.MaxInt {
			return fmt.Errorf("max entries %d must be positive", n)
		}
		c.MaxEntries = n
		return nil
	}
}

// MaxCost bounds the sum of the entries' costs; n must be positive.
func MaxCost(n int64) Option {
	return func(c *Config) error {
		if n <= 0 {
			return fmt.Errorf("max cost %d must be positive", n)
		}
		c.MaxCost = n
		return nil
	}
}

// Cost sets the cost function; nil is an error.
func Cost[V any](cost func(value V) int64) Option {
	return func(c *Config) error {
		if cost == nil {
			return errors.New("nil cost function")
		}
		c.cost = cost
		c.costType = reflect.TypeFor[V]()
		return nil
	}
}

// KeepStale sets the keep-stale window; d must not be negative.
func KeepStale(d time.Duration) Option {
	return func(c *Config) error {
		if d < 0 {
			return fmt.Errorf("keep-stale window %v is negative", d)
		}
		c.StaleFor = d
		return nil
	}
}

// Build applies opts in order and checks that they fit together for a store
// of V. It returns the cost function (nil when the store is bounded by
// entries) and fills in MaxEntries with DefaultMaxEntries when no bound was
// given. Its errors say what is wrong; the store wraps them in its own
// sentinel error.
func Build[V any, O ~func(*Config) error](opts []O) (cfg Config, cost func(V) int64, err error) {
	for i, o := range opts {
		if o == nil {
			return cfg, nil, fmt.Errorf("option %d is nil", i)
		}
		if err := o(&cfg); err != nil {
			return cfg, nil, err
		}
	}
	switch {
	case cfg.MaxEntries > 0 && cfg.MaxCost > 0:
		return cfg, nil, errors.New("set WithMaxEntries or WithMaxCost, not both")
	case cfg.MaxCost > 0 && cfg.cost == nil:
		return cfg, nil, errors.New("WithMaxCost needs WithCost")
	case cfg.MaxCost == 0 && cfg.cost != nil:
		return cfg, nil, errors.New("WithCost is set but WithMaxCost is not")
	}
	if cfg.cost != nil {
		var ok bool
		if cost, ok = cfg.cost.(func(V) int64); !ok {
			return cfg, nil, fmt.Errorf("WithCost takes a %v, the store holds %v", cfg.costType, reflect.TypeFor[V]())
		}
	}
	if cfg.MaxEntries == 0 && cfg.MaxCost == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	return cfg, cost, nil
}

// Expiry is the keep-stale arithmetic of a fill: with a keep-stale window the
// map keeps the entry for ttl+window and the entry carries the end of its TTL
// (Unix nanoseconds) for Get to check; without one the map's TTL is ttl and
// expires is 0.
func (c *Config) Expiry(now time.Time, ttl time.Duration) (mapTTL time.Duration, expires int64) {
	if c.StaleFor <= 0 {
		return ttl, 0
	}
	return ttl + c.StaleFor, now.Add(ttl).UnixNano()
}
