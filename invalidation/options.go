package invalidation

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/tiercache/tiercache/internal/bushook"
	"github.com/tiercache/tiercache/tiered/driver"
)

// Defaults of the options.
const (
	// DefaultChannelPrefix starts the name of every channel of the bus.
	DefaultChannelPrefix = "tiercache:inv"
	// DefaultShardedShards is the number of channels with sharded pub/sub.
	DefaultShardedShards = 16
	// DefaultClassicShards is the number of channels with classic pub/sub.
	DefaultClassicShards = 1
	// DefaultHeartbeatInterval is how often each bus announces itself (and
	// its sequence numbers) on the announcement channel.
	DefaultHeartbeatInterval = time.Second
	// DefaultSilenceIntervals is how many heartbeat intervals without an
	// announcement make another bus count as gone.
	DefaultSilenceIntervals = 3
	// DefaultPublishTimeout bounds each PUBLISH or SPUBLISH round trip.
	DefaultPublishTimeout = 500 * time.Millisecond
	// DefaultStartTimeout bounds how long New waits for its subscriptions.
	DefaultStartTimeout = 5 * time.Second
	// DefaultQueueSize is the capacity of each channel's publish queue.
	DefaultQueueSize = 1024
	// MaxShards is the largest number of channels.
	MaxShards = 1024
)

// An Option configures a Bus. Options are applied in order; New returns an
// error wrapping ErrInvalidOption for a value out of range, and never clamps
// one silently.
type Option func(*config) error

type config struct {
	prefix         string
	shards         int // 0: default for the transport
	sharded        *bool
	heartbeat      time.Duration
	silence        int
	publishTimeout time.Duration
	startTimeout   time.Duration
	queueSize      int
	lagLimit       time.Duration // 0: one heartbeat interval
	logger         *slog.Logger  // nil: slog.Default() at New
	hooks          bushook.Hooks
	clock          driver.Clock         // nil: driver.SystemClock at New
	meterProvider  metric.MeterProvider // nil: the global provider at New
}

func init() {
	bushook.Option = func(h bushook.Hooks) any {
		return Option(func(c *config) error {
			c.hooks = h
			return nil
		})
	}
}

func defaultConfig() config {
	return config{
		prefix:         DefaultChannelPrefix,
		heartbeat:      DefaultHeartbeatInterval,
		silence:        DefaultSilenceIntervals,
		publishTimeout: DefaultPublishTimeout,
		startTimeout:   DefaultStartTimeout,
		queueSize:      DefaultQueueSize,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
}

// WithChannelPrefix sets the prefix of the bus's channel names; buses talk
// to each other only when they share it. Default DefaultChannelPrefix
// ("tiercache:inv"). It must be non-empty, at most 128 bytes, and free of
// '{' and '}' (the bus adds its own hash tags).
func WithChannelPrefix(prefix string) Option {
	return func(c *config) error {
		switch {
		case prefix == "":
			return invalid("empty channel prefix")
		case len(prefix) > 128:
			return invalid("channel prefix of %d bytes, limit 128", len(prefix))
		case strings.ContainsAny(prefix, "{}"):
			return invalid("channel prefix %q contains a brace", prefix)
		}
		c.prefix = prefix
		return nil
	}
}

// WithShards sets the number of channels, 1 to MaxShards. A key's messages
// always travel on the same channel (chosen by a hash of namespace and key).
// Default DefaultShardedShards (16) with sharded pub/sub, whose channels are
// spread over the slots of a Cluster, and DefaultClassicShards (1) with
// classic pub/sub. Every bus of a cluster must use the same number.
func WithShards(n int) Option {
	return func(c *config) error {
		if n < 1 || n > MaxShards {
			return invalid("shards %d, want 1 to %d", n, MaxShards)
		}
		c.shards = n
		return nil
	}
}

// WithShardedPubSub chooses the transport: SPUBLISH/SSUBSCRIBE (sharded
// pub/sub, Redis 7) when true, PUBLISH/SUBSCRIBE when false. Default: true
// for a *redis.ClusterClient, where classic PUBLISH is broadcast to every
// node of the Cluster, and false for any other client.
func WithShardedPubSub(sharded bool) Option {
	return func(c *config) error {
		c.sharded = &sharded
		return nil
	}
}

// WithHeartbeatInterval sets how often the bus announces itself on the
// announcement channel (its id, its sequence number on every channel it
// used, the namespaces it can write), and how long after its last message
// on a channel it sends one heartbeat there. Default
// DefaultHeartbeatInterval (1 s); it must be at least 1 ms. A lost message
// is noticed within about one interval plus two lag limits.
func WithHeartbeatInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return invalid("heartbeat interval %v, want at least 1ms", d)
		}
		c.heartbeat = d
		return nil
	}
}

// WithSilenceIntervals sets after how many heartbeat intervals without an
// announcement another bus counts as gone: the bus flushes the caches of
// the namespaces it announced, once (should it speak again, a gap across
// the silence is still detected). Default DefaultSilenceIntervals (3); it
// must be at least 2.
func WithSilenceIntervals(n int) Option {
	return func(c *config) error {
		if n < 2 {
			return invalid("silence intervals %d, want at least 2", n)
		}
		c.silence = n
		return nil
	}
}

// WithPublishTimeout bounds every PUBLISH or SPUBLISH round trip (a batch
// sent in one pipeline counts as one), and connecting a subscription (dial,
// HELLO, SUBSCRIBE), through the context of the commands; Close returns
// within max(it, LeaveTimeout).
// go-redis applies a context deadline to socket reads and writes only when
// the client has ContextTimeoutEnabled; otherwise its ReadTimeout and
// WriteTimeout bound a stuck round trip (a Publish caller still returns when
// its own context ends). Default DefaultPublishTimeout (500 ms); it must be
// positive.
func WithPublishTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("publish timeout %v, want positive", d)
		}
		c.publishTimeout = d
		return nil
	}
}

// WithStartTimeout bounds how long New waits for every channel's first
// subscription confirmation. Default DefaultStartTimeout (5 s); zero means
// New does not wait. When it runs out, New still returns the bus, which
// keeps subscribing in the background and flushes when it gets there.
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("start timeout %v, want zero or positive", d)
		}
		c.startTimeout = d
		return nil
	}
}

// WithQueueSize sets the capacity of each channel's publish queue. Publish
// blocks (until its context ends) while the queue is full. Default
// DefaultQueueSize (1024); it must be at least 1.
func WithQueueSize(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("queue size %d, want at least 1", n)
		}
		c.queueSize = n
		return nil
	}
}

// WithLogger sets where the bus logs subscription losses, flushes, health
// changes and failed heartbeats. Default: slog.Default() at New. Nil is an
// error; to silence the bus pass slog.New(slog.DiscardHandler).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithLagLimit sets the largest lag at which a subscription still counts as
// healthy: the bus's own announcements must come back through it within
// this time, and a sequence number another bus announced must arrive on its
// channel within this time of the announcement. Default: one heartbeat
// interval; it must be at least 1 ms.
//
// A longer limit means fewer false alarms on a busy machine (each one
// flushes the caches: safe, but it costs hit ratio) and a longer D (see
// Bus.DetectionTime). With the default 3 silence intervals, a limit of up
// to one interval does not lengthen D at all, so the default is the most
// headroom that is free. Measured on 2 vCPUs at a load average of 15 to
// 19 (other processes spinning on both cores), four idle buses over a
// minute: at the default 1 s interval none ever turned unhealthy; at a
// 100 ms interval with the default 100 ms limit each turned unhealthy 28
// to 39 times (250 ms limit: 2 to 13 times, D 625 ms instead of 325 ms).
// Choose short intervals only where the machine has CPU to spare.
func WithLagLimit(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return invalid("lag limit %v, want at least 1ms", d)
		}
		c.lagLimit = d
		return nil
	}
}

// WithMeterProvider sets where the bus's metrics go (see the package
// documentation for the list). Default: the global provider
// (otel.GetMeterProvider) at New. Nil is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return invalid("nil meter provider")
		}
		c.meterProvider = mp
		return nil
	}
}

// WithClock sets the clock of the bus's timers and timestamps: heartbeats,
// the watchdog, announcements, health and lag, lease wake-ups. Default:
// driver.SystemClock, the one clock type of every tiercache package (tests
// pass a fake one). Nil is an error.
func WithClock(clock driver.Clock) Option {
	return func(c *config) error {
		if clock == nil {
			return invalid("nil clock")
		}
		c.clock = clock
		return nil
	}
}
