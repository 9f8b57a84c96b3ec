package tiercache

import (
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// GroupOption configures a Group (NewGroup).
type GroupOption func(*groupConfig) error

type groupConfig struct {
	bus      []invalidation.Option
	noBus    bool
	defaults []tiered.Option
}

// WithBusOptions passes opts to invalidation.New when NewGroup starts the
// bus (channel prefix, shards, heartbeat interval, logger, meter provider).
// Default: none, the bus's defaults. It may be given more than once; the
// options add up in order.
func WithBusOptions(opts ...invalidation.Option) GroupOption {
	return func(c *groupConfig) error {
		c.bus = append(c.bus, opts...)
		return nil
	}
}

// WithoutInvalidation makes a Group without a bus: its caches do not tell
// other nodes about their writes, so it only suits a single node or caches
// without L1. Default: off (the Group starts a bus).
func WithoutInvalidation() GroupOption {
	return func(c *groupConfig) error {
		c.noBus = true
		return nil
	}
}

// WithDefaults sets tiered options every cache of the Group gets before its
// own (a logger, a meter provider, TTLs common to every cache). Default:
// none. It may be given more than once; the options add up in order.
func WithDefaults(opts ...tiered.Option) GroupOption {
	return func(c *groupConfig) error {
		c.defaults = append(c.defaults, opts...)
		return nil
	}
}

// Option configures one cache made by New.
type Option func(*cacheConfig) error

type cacheConfig struct {
	tiered  []tiered.Option
	remote  []remote.Option
	local   []local.Option
	withL1  bool // WithLocal was given
	noLocal bool
}

// WithTiered passes opts to tiered.New (TTLs, timeouts, leases, breaker,
// error handler, telemetry). Default: none, tiered's defaults (with the
// Group's WithDefaults first). It may be given more than once; the options
// add up in order.
func WithTiered(opts ...tiered.Option) Option {
	return func(c *cacheConfig) error {
		c.tiered = append(c.tiered, opts...)
		return nil
	}
}

// WithRemote passes opts to remote.New for the cache's L2 store (codec, key
// and value size limits). Default: none, remote's defaults (JSON). It may be
// given more than once; the options add up in order.
func WithRemote(opts ...remote.Option) Option {
	return func(c *cacheConfig) error {
		c.remote = append(c.remote, opts...)
		return nil
	}
}

// WithLocal passes opts to local.New for the cache's ristretto L1.
// Default: none, local's defaults (DefaultMaxEntries entries). It may be
// given more than once; the options add up in order. A local.WithCost
// function must take the cache's value type: New returns an error wrapping
// local.ErrInvalidOption otherwise.
func WithLocal(opts ...local.Option) Option {
	return func(c *cacheConfig) error {
		if c.noLocal {
			return fmt.Errorf("%w: WithLocal and WithoutLocal together", ErrInvalidOption)
		}
		c.local = append(c.local, opts...)
		c.withL1 = true
		return nil
	}
}

// WithoutLocal makes an L2-only cache: no L1, every read goes to Redis.
// Default: off (the cache has an L1). It conflicts with WithLocal.
func WithoutLocal() Option {
	return func(c *cacheConfig) error {
		if c.withL1 {
			return fmt.Errorf("%w: WithLocal and WithoutLocal together", ErrInvalidOption)
		}
		c.noLocal = true
		return nil
	}
}

// isNil reports a nil client, also a typed nil pointer of go-redis.
func isNil(c Client) bool {
	switch c := c.(type) {
	case nil:
		return true
	case *redis.Client:
		return c == nil
	case *redis.ClusterClient:
		return c == nil
	case *redis.Ring:
		return c == nil
	}
	return false
}
