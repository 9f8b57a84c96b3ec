package tiercache

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// Errors. Match them with errors.Is.
var (
	// ErrInvalidOption is returned by NewGroup and New for an option or
	// argument they cannot use.
	ErrInvalidOption = errors.New("tiercache: invalid option")
	// ErrClosed is returned by New on a closed Group.
	ErrClosed = errors.New("tiercache: group closed")
)

// Client is the go-redis client a Group runs on: *redis.Client (standalone,
// or Sentinel through redis.NewFailoverClient), *redis.ClusterClient and
// redis.UniversalClient satisfy it. It is what package remote and package
// invalidation each need. The Group never closes it: the caller made it and
// closes it after the Group.
type Client interface {
	remote.Client
	invalidation.Client
}

// StatusSource is what a status page reads from a cache: every
// *tiered.Cache[V] satisfies it, whatever V. It is an alias of an unnamed
// interface type so that package debugpage can declare the identical type
// without importing this package.
type StatusSource = interface{ Status() tiered.Status }

// Group is the shared part of the caches of one process on one Redis: the
// client and the invalidation bus. Make one Group per process (per Redis
// deployment) with NewGroup, then any number of caches with New; Close the
// Group at shutdown, which closes its caches, then its bus.
//
// Caches of one Group share one bus, so a process has one set of pub/sub
// connections and heartbeats however many caches it has.
//
// A Group is safe for concurrent use.
type Group struct {
	client   Client
	bus      *invalidation.Bus // nil WithoutInvalidation
	defaults []tiered.Option

	mu     sync.Mutex
	caches []member // open caches, in creation order
	closed bool
}

// member is a cache made by New.
type member struct {
	cache interface {
		StatusSource
		Close() error
	}
}

// NewGroup returns a Group on client: it starts the invalidation bus
// (invalidation.New with the options of WithBusOptions) unless
// WithoutInvalidation is given. It returns an error for a nil client, an
// invalid option, or a bus that cannot start (see invalidation.New; an
// unreachable Redis is not such an error: the bus retries in the
// background).
func NewGroup(client Client, opts ...GroupOption) (*Group, error) {
	if isNil(client) {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	var cfg groupConfig
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: group option %d is nil", ErrInvalidOption, i)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	g := &Group{client: client, defaults: cfg.defaults}
	if !cfg.noBus {
		bus, err := invalidation.New(client, cfg.bus...)
		if err != nil {
			return nil, fmt.Errorf("tiercache: starting the invalidation bus: %w", err)
		}
		g.bus = bus
	}
	return g, nil
}

// New returns a cache of values of type V named name on g: a ristretto L1
// (package local), a Redis L2 on g's client (package remote) and g's bus
// for invalidations, configured by opts (see WithTiered, WithLocal,
// WithRemote). The Group's defaults (WithDefaults) apply first, then opts.
//
// The cache is a plain *tiered.Cache[V]. Closing it is optional: Group.Close
// closes every cache the Group made that is still open. Closing it earlier
// removes it from the Group.
//
// New is a function, not a method, because Go methods cannot have type
// parameters.
func New[V any](g *Group, name string, opts ...Option) (*tiered.Cache[V], error) {
	if g == nil {
		return nil, fmt.Errorf("%w: nil group", ErrInvalidOption)
	}
	var cfg cacheConfig
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: option %d of cache %q is nil", ErrInvalidOption, i, name)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	var l1 driver.Local[V]
	if !cfg.noLocal {
		store, err := local.New[V](cfg.local...)
		if err != nil {
			return nil, fmt.Errorf("tiercache: L1 of cache %q: %w", name, err)
		}
		l1 = store
	}
	closeL1 := func() {
		if l1 != nil {
			l1.Close()
		}
	}
	// The probe names a key under the cache's namespace, which a
	// least-privilege ACL user may access (an option among cfg.remote
	// replaces it).
	ropts := append([]remote.Option{remote.WithProbeKey(name + ":\x00probe")}, cfg.remote...)
	l2, err := remote.New(g.client, ropts...)
	if err != nil {
		closeL1()
		return nil, fmt.Errorf("tiercache: L2 of cache %q: %w", name, err)
	}
	topts := slices.Concat(g.defaults, cfg.tiered)
	if g.bus != nil {
		// First, so that a WithInvalidation among opts replaces it.
		topts = slices.Insert(topts, 0, tiered.WithInvalidation(g.bus))
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		closeL1()
		return nil, ErrClosed
	}
	c, err := tiered.New(name, l1, l2, topts...)
	if err != nil {
		closeL1()
		return nil, err
	}
	g.caches = append(g.caches, member{cache: c})
	return c, nil
}

// Bus returns the Group's invalidation bus, shared by its caches; nil with
// WithoutInvalidation. Use it for the bus's own calls (Stats, PublishFlush)
// or to give it to caches built by hand (tiered.WithInvalidation). The Group
// closes it.
func (g *Group) Bus() *invalidation.Bus { return g.bus }

// Caches returns the Group's open caches in creation order, as status
// sources (for package debugpage). Caches closed by their own Close are
// left out.
func (g *Group) Caches() []StatusSource {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune()
	out := make([]StatusSource, len(g.caches))
	for i, m := range g.caches {
		out[i] = m.cache
	}
	return out
}

// prune drops the caches closed by their own Close. Under g.mu.
func (g *Group) prune() {
	g.caches = slices.DeleteFunc(g.caches, func(m member) bool { return m.cache.Status().Closed })
}

// Close closes every open cache of the Group (newest first: each waits for
// its loads in flight and leaves the bus), then the bus. It does not close
// the client. Later calls to New return ErrClosed. Close is idempotent and
// returns the bus's error, if any.
//
// Close returns within 1 s whatever Redis does (down, frozen, cut off),
// given a client with ContextTimeoutEnabled, the default timeouts and
// loaders that return once their context is cancelled: a cache's Close
// waits for its loads, whose L2 calls end within the remote timeout
// (tiered.Cache.Close: 1-100 ms measured with Redis frozen), and the bus's
// Close takes at most max(PublishTimeout, invalidation.LeaveTimeout), 500
// ms by default (invalidation.Bus.Close). Once Close has returned, the
// bus's pub/sub connections are closed; the client's pool is the client's,
// closed by its own Close.
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	caches := g.caches
	g.caches = nil
	g.mu.Unlock()

	var errs []error
	for i := len(caches) - 1; i >= 0; i-- {
		errs = append(errs, caches[i].cache.Close())
	}
	if g.bus != nil {
		errs = append(errs, g.bus.Close())
	}
	return errors.Join(errs...)
}
