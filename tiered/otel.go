package tiered

import (
	"context"
	"errors"
	"fmt"

	"github.com/tiercache/tiercache/internal/otelx"
	"github.com/tiercache/tiercache/tiered/driver"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the cache's metrics and spans.
const ScopeName = "github.com/tiercache/tiercache/tiered"

// Attribute keys on every metric and span of a cache.
const (
	AttrCache     = attribute.Key("tiercache.cache")     // the cache's name
	AttrTier      = attribute.Key("tiercache.tier")      // l1 | l2 | loader
	AttrResult    = attribute.Key("tiercache.result")    // requests: hit | miss | not_found | stale (WithStaleIfError) | error; refreshes: started | skipped | error
	AttrOperation = attribute.Key("tiercache.operation") // L2 operation: get, get_many, set, delete, acquire, compare_and_swap, compare_and_delete
	AttrShared    = attribute.Key("tiercache.shared")    // the caller joined a flight another caller started
	AttrShard     = attribute.Key("tiercache.shard")     // L2 shard (primary address) of breaker metrics; absent on a single shard
	attrErrorType = attribute.Key("error.type")
)

// WithMeterProvider sets where the cache's metrics go. Default: the global
// provider (otel.GetMeterProvider) at New. Nil is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return fmt.Errorf("%w: nil meter provider", ErrInvalidOption)
		}
		c.meterProvider = mp
		return nil
	}
}

// WithTracerProvider sets where the cache's spans go. Default: the global
// provider (otel.GetTracerProvider) at New. Nil is an error.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", ErrInvalidOption)
		}
		c.tracerProvider = tp
		return nil
	}
}

// telemetry holds a cache's instruments. Counters are the cache's atomics,
// read by one asynchronous callback at collection time: nothing on the L1 hit
// path touches OpenTelemetry. Histograms are recorded synchronously, only on
// paths that already do I/O.
type telemetry struct {
	tracer      trace.Tracer
	cacheAttr   attribute.KeyValue
	spanOptions []trace.SpanStartOption // the cache attribute, built once
	loadTime    metric.Float64Histogram
	remoteTime  metric.Float64Histogram
	leaseWait   metric.Float64Histogram
	cacheOption metric.MeasurementOption
	remoteOps   map[string]metric.MeasurementOption
	reg         metric.Registration
}

// durationBuckets suit both sub-millisecond Redis round trips and slow
// loaders: 100 µs to 10 s.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

var remoteOps = []string{"get", "get_many", "set", "delete", "acquire", "compare_and_swap", "compare_and_delete", "set_many", "tag_generations", "tag_ensure", "tag_bump", "acquire_many", "compare_and_swap_many", "touch"}

// remoteSpanNames maps an L2 operation to its span name, built once.
var remoteSpanNames = func() map[string]string {
	m := make(map[string]string, len(remoteOps))
	for _, op := range remoteOps {
		m[op] = "tiercache.l2." + op
	}
	return m
}()

func newTelemetry[V any](c *Cache[V]) (*telemetry, error) {
	mp, tp := c.cfg.meterProvider, c.cfg.tracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	meter := mp.Meter(ScopeName)
	cacheAttr := AttrCache.String(c.name)
	t := &telemetry{
		tracer:      tp.Tracer(ScopeName),
		cacheAttr:   cacheAttr,
		spanOptions: []trace.SpanStartOption{trace.WithAttributes(cacheAttr)},
		cacheOption: metric.WithAttributeSet(attribute.NewSet(cacheAttr)),
		remoteOps:   make(map[string]metric.MeasurementOption, len(remoteOps)),
	}
	for _, op := range remoteOps {
		t.remoteOps[op] = metric.WithAttributeSet(attribute.NewSet(cacheAttr, AttrOperation.String(op)))
	}
	ins := otelx.Instruments{Meter: meter}
	hist := func(name, desc string) metric.Float64Histogram {
		return ins.Histogram(name, "s", desc, durationBuckets)
	}
	t.loadTime = hist("tiercache.loader.duration", "Duration of loader calls.")
	t.remoteTime = hist("tiercache.remote.duration", "Duration of L2 (Redis) operations.")
	t.leaseWait = hist("tiercache.lease.wait.duration", "Time spent waiting for another node's load lease.")

	counter, gauge := ins.Counter, ins.Gauge
	requests := counter("tiercache.requests", "{request}", "Reads by the tier that answered (or was passed) and the result.")
	loads := counter("tiercache.loader.calls", "{call}", "Loader calls (a batch call counts once).")
	leases := counter("tiercache.lease.acquired", "{lease}", "Load leases this node won.")
	waits := counter("tiercache.lease.waits", "{wait}", "Times this node waited for another node's lease.")
	takeovers := counter("tiercache.lease.takeovers", "{lease}", "Leases won after waiting on an expired or vanished one.")
	rejected := counter("tiercache.fills.rejected", "{fill}", "Loads not stored because the key changed during the load.")
	refreshes := counter("tiercache.refreshes", "{refresh}", "Early refreshes, by result (started, skipped, error).")
	handled := counter("tiercache.errors.handled", "{error}", "Errors given to the error handler instead of a caller.")
	corrupt := counter("tiercache.l2.corrupt", "{value}", "L2 values the codec could not decode (deleted and reloaded).")
	breakerOpen := gauge("tiercache.remote.breaker.open", "{breaker}", "1 while the circuit breaker of the L2 shard (attribute tiercache.shard on a Cluster) refuses calls, else 0.")
	breakerRejected := counter("tiercache.remote.breaker.rejected", "{call}", "L2 calls refused by the open circuit breaker.")
	l1Entries := gauge("tiercache.l1.entries", "{entry}", "Entries held in L1.")
	l1Cost := gauge("tiercache.l1.cost", "{cost}", "Cost held in L1, in the unit of the cost function.")
	l1Dropped := counter("tiercache.l1.sets.dropped", "{set}", "L1 fills dropped because its buffers were full.")
	l1Rejected := counter("tiercache.l1.sets.rejected", "{set}", "L1 fills refused by the admission policy.")
	if err := ins.Err(); err != nil {
		return nil, fmt.Errorf("tiered: creating instruments: %w", err)
	}

	set := func(kv ...attribute.KeyValue) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{cacheAttr}, kv...)...))
	}
	tierResult := func(tier, result string) metric.ObserveOption {
		return set(AttrTier.String(tier), AttrResult.String(result))
	}
	type reading struct {
		opt  metric.ObserveOption
		read func() uint64
	}
	s := &c.stats
	reqs := []reading{
		{tierResult("l1", "hit"), s.l1Hit.Load},
		{tierResult("l1", "not_found"), s.l1NotFound.Load},
		{tierResult("l1", "miss"), s.l1Miss.Load},
		{tierResult("l1", "stale"), func() uint64 { return s.staleServed.Load() + s.softTimeouts.Load() }},
		{tierResult("l2", "hit"), s.l2Hit.Load},
		{tierResult("l2", "not_found"), s.l2NotFound.Load},
		{tierResult("l2", "miss"), s.l2Miss.Load},
		{tierResult("l2", "error"), s.l2Error.Load},
		{tierResult("loader", "hit"), func() uint64 { return s.loads.Load() - s.loadNotFound.Load() - s.loadErrors.Load() }},
		{tierResult("loader", "not_found"), s.loadNotFound.Load},
		{tierResult("loader", "error"), s.loadErrors.Load},
	}
	refreshReads := []reading{
		{set(AttrResult.String("started")), s.refreshStarted.Load},
		{set(AttrResult.String("skipped")), s.refreshSkipped.Load},
		{set(AttrResult.String("error")), s.refreshErrors.Load},
	}
	plain := set()
	lm, _ := c.l1.(driver.Sizer)
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, r := range reqs {
			o.ObserveInt64(requests, int64(r.read()), r.opt)
		}
		for _, r := range refreshReads {
			o.ObserveInt64(refreshes, int64(r.read()), r.opt)
		}
		o.ObserveInt64(loads, int64(s.loads.Load()), plain)
		o.ObserveInt64(leases, int64(s.leaseAcquired.Load()), plain)
		o.ObserveInt64(waits, int64(s.leaseWaits.Load()), plain)
		o.ObserveInt64(takeovers, int64(s.leaseTakeovers.Load()), plain)
		o.ObserveInt64(rejected, int64(s.fillsRejected.Load()), plain)
		o.ObserveInt64(handled, int64(s.handledErrors.Load()), plain)
		o.ObserveInt64(corrupt, int64(s.l2Corrupt.Load()), plain)
		if bs := c.breakers; bs != nil {
			bs.each(func(b *breaker) {
				open := int64(0)
				if b.isOpen() {
					open = 1
				}
				opt := plain
				if b.shard != "" {
					opt = set(AttrShard.String(b.shard))
				}
				o.ObserveInt64(breakerOpen, open, opt)
				o.ObserveInt64(breakerRejected, int64(b.rejected.Load()), opt)
			})
		}
		if lm != nil {
			entries, cost, dropped, rej := lm.Metrics()
			o.ObserveInt64(l1Entries, int64(entries), plain)
			o.ObserveInt64(l1Cost, int64(cost), plain)
			o.ObserveInt64(l1Dropped, int64(dropped), plain)
			o.ObserveInt64(l1Rejected, int64(rej), plain)
		}
		return nil
	}, requests, refreshes, loads, leases, waits, takeovers, rejected, handled, corrupt, breakerOpen, breakerRejected, l1Entries, l1Cost, l1Dropped, l1Rejected)
	if err != nil {
		return nil, fmt.Errorf("tiered: registering metrics callback: %w", err)
	}
	t.reg = reg
	return t, nil
}

func (t *telemetry) close() {
	if t.reg != nil {
		t.reg.Unregister()
	}
}

// startSpan starts a span named name as a child of ctx's span.
func (t *telemetry) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, name, t.spanOptions...)
}

// endSpan ends span, marking err on it. ErrNotFound is a result, not an
// error.
func endSpan(span trace.Span, err error) {
	if err != nil && !errors.Is(err, ErrNotFound) {
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(attrErrorType.String(errorType(err)))
	}
	span.End()
}

// errorType is the error.type of err: a low-cardinality class.
func errorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrRemote):
		return "remote"
	case errors.Is(err, ErrLoaderPanic):
		return "loader_panic"
	case errors.Is(err, ErrLoadFailed):
		return "load_failed"
	case errors.Is(err, ErrCodec):
		return "codec"
	case errors.Is(err, ErrInvalidation):
		return "invalidation"
	}
	return fmt.Sprintf("%T", err)
}

// remoteOp is the measurement option of L2 operation op (one built per call
// for an operation missing from remoteOps).
func (t *telemetry) remoteOp(op string) metric.MeasurementOption {
	if o, ok := t.remoteOps[op]; ok {
		return o
	}
	return metric.WithAttributeSet(attribute.NewSet(t.cacheAttr, AttrOperation.String(op)))
}
