package tiered

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of the options.
const (
	DefaultLocalTTL      = 10 * time.Second
	DefaultRemoteTTL     = 10 * time.Minute
	DefaultNotFoundTTL   = 30 * time.Second
	DefaultJitter        = 0.1
	DefaultRemoteTimeout = 100 * time.Millisecond
	DefaultLoadTimeout   = 10 * time.Second
	// DefaultLeaseTTL is how long a load lease lives in L2 unless renewed
	// (see WithLeaseTTL).
	DefaultLeaseTTL     = 3 * time.Second
	DefaultLeasePollMin = time.Millisecond
	DefaultLeasePollMax = 8 * time.Millisecond
	// DefaultBreakerThreshold is how many consecutive L2 failures open the
	// circuit breaker.
	DefaultBreakerThreshold = 5
	// DefaultBreakerCoolDown is how long the open breaker refuses L2 calls
	// before it lets one probe through.
	DefaultBreakerCoolDown = time.Second
	// DefaultEarlyRefreshBeta is the beta of probabilistic early refresh.
	DefaultEarlyRefreshBeta = 1.0
)

type config struct {
	localTTL, remoteTTL, notFoundTTL time.Duration
	jitter                           float64
	remoteTimeout, loadTimeout       time.Duration
	clockSkew                        time.Duration
	leaseTTL                         time.Duration
	leaseTTLSet                      bool // by WithLeaseTTL; else derived from the remote timeout
	staleIfError                     time.Duration
	softLoadTimeout                  time.Duration // 0: off
	slideEvery                       time.Duration // 0: no sliding TTL
	hotThreshold                     int           // 0: no hot-key refresh
	hotWindow                        time.Duration
	softMaxStale                     time.Duration
	pollMin, pollMax                 time.Duration
	beta                             float64 // early refresh; 0 is off
	noLeases                         bool
	breakerThreshold                 int
	maxLoads                         int
	breakerCoolDown                  time.Duration
	meterProvider                    metric.MeterProvider
	tracerProvider                   trace.TracerProvider
	onError                          func(ctx context.Context, err error) // nil: log, rate-limited
	logger                           *slog.Logger                         // nil: slog.Default()
	clock                            driver.Clock                         // every timer and timestamp of the cache
	bus                              driver.Bus
	tags                             bool
}

func defaultConfig() config {
	return config{
		localTTL:      DefaultLocalTTL,
		remoteTTL:     DefaultRemoteTTL,
		notFoundTTL:   DefaultNotFoundTTL,
		jitter:        DefaultJitter,
		remoteTimeout: DefaultRemoteTimeout,
		clockSkew:     250 * time.Millisecond,
		loadTimeout:   DefaultLoadTimeout,
		leaseTTL:      DefaultLeaseTTL,
		pollMin:       DefaultLeasePollMin,
		pollMax:       DefaultLeasePollMax,
		beta:          DefaultEarlyRefreshBeta,
		clock:         driver.SystemClock,

		breakerThreshold: DefaultBreakerThreshold,
		breakerCoolDown:  DefaultBreakerCoolDown,
	}
}

// Option configures a Cache in New.
type Option func(*config) error

func positive(name string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: %s %v must be positive", ErrInvalidOption, name, d)
	}
	return nil
}

// WithLocalTTL sets the ceiling of an L1 entry's life. An entry lives
// min(LocalTTL, remaining L2 TTL). Default DefaultLocalTTL (10 s); it must be
// positive. It bounds how long a node can serve a value changed elsewhere
// when invalidation messages are lost.
func WithLocalTTL(d time.Duration) Option {
	return func(c *config) error { c.localTTL = d; return positive("local TTL", d) }
}

// WithRemoteTTL sets the TTL of values in L2, before jitter. Default
// DefaultRemoteTTL (10 min); it must be positive.
func WithRemoteTTL(d time.Duration) Option {
	return func(c *config) error { c.remoteTTL = d; return positive("remote TTL", d) }
}

// WithNotFoundTTL sets how long a loader's ErrNotFound is cached in L2 (and
// in L1, capped by LocalTTL), before jitter. Default DefaultNotFoundTTL
// (30 s); zero turns negative caching off; negative is an error.
func WithNotFoundTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: not-found TTL %v is negative", ErrInvalidOption, d)
		}
		c.notFoundTTL = d
		return nil
	}
}

// WithJitter sets the relative jitter of L2 TTLs: a TTL t becomes a random
// value in [t*(1-j), t*(1+j)], so keys written together do not expire
// together. Default DefaultJitter (0.1); zero turns jitter off; it must be in
// [0, 1).
func WithJitter(j float64) Option {
	return func(c *config) error {
		if !(j >= 0 && j < 1) {
			return fmt.Errorf("%w: jitter %v must be in [0, 1)", ErrInvalidOption, j)
		}
		c.jitter = j
		return nil
	}
}

// WithRemoteTimeout bounds every L2 call (and every Publish) so a slow Redis
// cannot make the cache slower than no cache. The bound is a context
// deadline: go-redis applies it to socket reads only when the client has
// ContextTimeoutEnabled. Default DefaultRemoteTimeout (100 ms). Zero turns
// the per-call deadline off, leaving the client's own timeouts (ReadTimeout,
// WriteTimeout) and the caller's context in charge: go-redis spends a few
// microseconds per call on a deadline, which matters on loopback-fast
// networks. Negative is an error.
func WithRemoteTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: remote timeout %v is negative", ErrInvalidOption, d)
		}
		c.remoteTimeout = d
		return nil
	}
}

// WithLoadTimeout bounds the shared work of one flight: lease waits and the
// loader call, which run detached from any single caller's context. Default
// DefaultLoadTimeout (10 s); it must be positive.
func WithLoadTimeout(d time.Duration) Option {
	return func(c *config) error { c.loadTimeout = d; return positive("load timeout", d) }
}

// WithLeaseTTL sets how long a load lease lives in L2 unless renewed. The
// node holding it renews it every d/3 while its loader runs, so a lease
// outlives a dead holder (killed, frozen, cut off) by at most d, after which
// another node takes the load over; a live holder keeps it for as long as
// its load takes. It is independent of the load timeout. Default
// DefaultLeaseTTL (3 s), or three times the remote timeout when that is
// longer. It must be longer than the remote timeout (a renewal must be able
// to land before the lease ends) and than the longest lease poll interval
// (WithLeasePoll); New rejects other values.
func WithLeaseTTL(d time.Duration) Option {
	return func(c *config) error { c.leaseTTL, c.leaseTTLSet = d, true; return positive("lease TTL", d) }
}

// WithLeasePoll sets how a node waiting on another node's lease polls L2:
// first after min, doubling up to max. Default DefaultLeasePollMin (1 ms) to
// DefaultLeasePollMax (8 ms); both must be positive and min <= max.
func WithLeasePoll(min, max time.Duration) Option {
	return func(c *config) error {
		if min <= 0 || max < min {
			return fmt.Errorf("%w: lease poll %v..%v needs 0 < min <= max", ErrInvalidOption, min, max)
		}
		c.pollMin, c.pollMax = min, max
		return nil
	}
}

// WithEarlyRefresh sets beta of probabilistic early refresh (XFetch). A
// read that finds a value in L2 starts one background reload when
//
//	now - loadTime * beta * ln(rand()) >= expiry
//
// where loadTime is how long the value's last load took, so slow loads are
// refreshed earlier and larger beta refreshes earlier. At most one node
// refreshes a key at a time; callers keep getting the current value; the new
// value is written only if the key was not changed or deleted meanwhile. To
// let reads reach L2 in time, an L1 entry ends 3*beta*loadTime before its L2
// expiry (min(LocalTTL, remaining L2 TTL) still bounds it). Default
// DefaultEarlyRefreshBeta (1); zero turns early refresh off; negative is an
// error.
func WithEarlyRefresh(beta float64) Option {
	return func(c *config) error {
		if !(beta >= 0) || math.IsInf(beta, 1) {
			return fmt.Errorf("%w: early refresh beta %v must be finite and >= 0", ErrInvalidOption, beta)
		}
		c.beta = beta
		return nil
	}
}

// WithCircuitBreaker sets the L2 circuit breakers, one per shard (per
// Cluster primary, as the Remote's optional Shard(key) method tells; one in
// all for standalone or Sentinel). A shard's breaker counts only calls that
// found the shard unavailable: errors the Remote marks with an
// Unavailable() bool method returning true (package remote marks connection
// errors, LOADING, TRYAGAIN and MASTERDOWN) and calls cut by the remote
// timeout (WithRemoteTimeout) while the caller's context was still alive.
// It never counts the caller's own cancellation or deadline, validation
// errors (key too long, value too large), error replies that prove the
// server is up (NOPERM, WRONGTYPE, script errors) or errors the Remote
// marks answered (driver.AnsweredError: package remote marks a Cluster's
// CLUSTERDOWN, which every primary answers while another shard fails over,
// and timeouts while it lasts): those go to the caller or the error
// handler. After threshold consecutive such calls the
// breaker opens and the shard's calls fail at once with ErrCircuitOpen for
// coolDown: reads of its keys go from L1 straight to the loader (still one
// flight per key on this node), writes return the error; keys of other
// shards are unaffected. Then one call probes the shard; success closes the
// breaker, failure keeps it open for another coolDown. Calls admitted before
// an opening cannot close it. Each opening is reported to the error handler
// once; refused calls are counted (Stats.Shards). Default
// DefaultBreakerThreshold (5) and DefaultBreakerCoolDown (1 s); threshold 0
// turns the breakers off; negative values and a zero cool-down with a
// threshold are errors.
func WithCircuitBreaker(threshold int, coolDown time.Duration) Option {
	return func(c *config) error {
		if threshold < 0 || (threshold > 0 && coolDown <= 0) {
			return fmt.Errorf("%w: circuit breaker threshold %d, cool-down %v: need threshold >= 0 and a positive cool-down", ErrInvalidOption, threshold, coolDown)
		}
		c.breakerThreshold, c.breakerCoolDown = threshold, coolDown
		return nil
	}
}

// WithMaxConcurrentLoads caps the loader calls (single and batch) this
// cache runs at once on this node; more wait for a slot, bounded by the
// load timeout. It protects the source of truth when many keys miss at
// once, for instance while the circuit breaker is open and L2 absorbs
// nothing. Default 0: no cap; negative is an error.
func WithMaxConcurrentLoads(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: max concurrent loads %d is negative", ErrInvalidOption, n)
		}
		c.maxLoads = n
		return nil
	}
}

// WithoutLeases turns the cluster-wide load lock off: on an L2 miss each node
// calls the loader itself (callers on one node still share one flight) and
// writes the result with a plain SET. That costs one Redis round trip less
// per miss but gives up the one-load-per-cluster and no-stale-fill
// guarantees; it exists to measure them. Default: leases on.
func WithoutLeases() Option {
	return func(c *config) error { c.noLeases = true; return nil }
}

// WithErrorHandler sets the function told about errors the cache handles
// itself instead of returning them: an L2 failure during GetOrLoad (the
// loader answered instead), a failed L2 fill, a lease release that failed.
// It must be safe for concurrent use and should return quickly. It sees
// every handled error. Default: log at warning level on slog.Default(),
// rate-limited like WithLogger. Nil is an error.
func WithErrorHandler(h func(ctx context.Context, err error)) Option {
	return func(c *config) error {
		if h == nil {
			return fmt.Errorf("%w: nil error handler", ErrInvalidOption)
		}
		c.onError, c.logger = h, nil
		return nil
	}
}

// WithLogger reports handled errors (see WithErrorHandler) on l at warning
// level, at most 10 lines at once and one a second after that
// (a line after a pause carries the number suppressed). It replaces an
// earlier WithErrorHandler. Nil is an error.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		c.onError = nil
		return nil
	}
}

// WithInvalidation connects the cache to a bus: Set and Delete publish the
// changed keys, and the cache drops keys other nodes changed. Default: none
// (a single node, or other nodes rely on LocalTTL alone). Nil is an error.
func WithInvalidation(b driver.Bus) Option {
	return func(c *config) error {
		if b == nil {
			return fmt.Errorf("%w: nil bus", ErrInvalidOption)
		}
		c.bus = b
		return nil
	}
}

// checkLease rejects lease settings that cannot work: a renewal every
// LeaseTTL/3 must land before the lease ends, so the remote timeout must be
// shorter than the lease TTL, as must the lease poll interval for waiters to
// notice a dead lease in time.
func (c *config) checkLease() error {
	if !c.leaseTTLSet {
		c.leaseTTL = max(DefaultLeaseTTL, 3*c.remoteTimeout)
	}
	if c.remoteTimeout >= c.leaseTTL {
		return fmt.Errorf("%w: lease TTL %v must be longer than the remote timeout %v (renewals must land before the lease ends)", ErrInvalidOption, c.leaseTTL, c.remoteTimeout)
	}
	if c.pollMax >= c.leaseTTL {
		return fmt.Errorf("%w: lease TTL %v must be longer than the longest lease poll %v", ErrInvalidOption, c.leaseTTL, c.pollMax)
	}
	return nil
}

// WithClock sets the clock of every timer and timestamp of the cache: lease
// expiries, renewals and polls, the breakers, early refresh, entry
// expiries, write fencing and the error log limiter. Default:
// driver.SystemClock. A nil clock is an error. Contexts' deadlines (the
// remote and load timeouts) always run on the system clock.
func WithClock(clock driver.Clock) Option {
	return func(c *config) error {
		if clock == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		c.clock = clock
		return nil
	}
}

// WithClockSkew sets how far the clocks of the service nodes and of Redis
// may be apart. Every unconditional L2 write (Set, SetMany) carries a
// deadline, the end of its remote timeout plus this allowance, and Redis
// refuses the write once its own clock is past it, so that a write held up
// in the network (a partition that heals, a frozen node) cannot land after
// a later Delete or Set of the key. A write whose outcome is unknown is
// also removed once the deadline has passed, if the key still holds it.
// A larger allowance tolerates worse clocks; a late write may then live
// that much longer. Default 250 ms; it must not be negative. With the
// remote timeout off (0) and no deadline on the caller's context, writes
// are not fenced.
func WithClockSkew(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: clock skew allowance %v is negative", ErrInvalidOption, d)
		}
		c.clockSkew = d
		return nil
	}
}

// WithSoftLoadTimeout answers a GetOrLoad or GetOrLoadMany caller with the
// key's expired L1 value when the key has to be loaded and the load takes
// longer than d, if that value expired at most maxStale ago. The load goes
// on in the background and fills both tiers when it ends; later callers get
// its result. The load timeout (WithLoadTimeout) still bounds the load, and
// the caller's ctx still bounds the caller. Such answers are counted
// (Stats.SoftTimeouts, tiercache.requests with tier l1 and result
// "stale") and mark the span (tiercache.result=stale). The L1 store must
// keep expired entries at least maxStale: it must implement StaleLocal (for
// package local: local.WithKeepStale(maxStale) or longer); New rejects an
// L1 without it. Default: off. d and maxStale must be positive.
func WithSoftLoadTimeout(d, maxStale time.Duration) Option {
	return func(c *config) error {
		if d <= 0 || maxStale <= 0 {
			return fmt.Errorf("%w: soft load timeout %v and stale window %v must be positive", ErrInvalidOption, d, maxStale)
		}
		c.softLoadTimeout, c.softMaxStale = d, maxStale
		return nil
	}
}

// WithStaleIfError lets the cache answer a GetOrLoad with an L1 entry whose
// TTL passed less than d ago when L2 has failed and the loader failed too
// (DESIGN section 7), instead of returning the loader's error. Such answers
// are counted (Stats.StaleServed, tiercache.requests with tier l1 and
// result "stale") and mark the span (tiercache.result=stale). The L1 store
// must keep expired entries at least d: it must implement StaleLocal (for
// package local: local.WithKeepStale(d) or longer); New rejects an L1
// without it. Default 0: off. d must not be negative.
func WithStaleIfError(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: stale-if-error window %v is negative", ErrInvalidOption, d)
		}
		c.staleIfError = d
		return nil
	}
}
