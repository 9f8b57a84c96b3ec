package invalidation

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/internal/otelx"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope of the bus's metrics.
const ScopeName = "github.com/tiercache/tiercache/invalidation"

// Attribute keys of the bus's metrics.
const (
	// AttrMessageKind is the kind of a message: keys | flush | heartbeat.
	AttrMessageKind = attribute.Key("tiercache.message.kind")
	// AttrFlushReason is why the bus asked caches to flush:
	// gap | resubscribe | silence | remote | unhealthy | undecodable.
	AttrFlushReason = attribute.Key("tiercache.flush.reason")
)

// telemetry holds a bus's instruments. The counters are the bus's atomics
// (see counters), read by one asynchronous callback at collection time; the
// lag histogram is recorded synchronously on the receive path, once per keys
// message applied.
type telemetry struct {
	lag metric.Float64Histogram
	reg metric.Registration
}

// lagBoundsSeconds returns lagBounds in seconds, the bucket boundaries of
// tiercache.invalidation.lag: the same as those of Stats.Lag.
func lagBoundsSeconds() []float64 {
	s := make([]float64, len(lagBounds))
	for i, d := range lagBounds {
		s[i] = d.Seconds()
	}
	return s
}

// newTelemetry creates the instruments of a bus on mp (the global provider
// when nil) and registers the callback reading c.
func newTelemetry(mp metric.MeterProvider, c *counters) (*telemetry, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(ScopeName)
	ins := otelx.Instruments{Meter: meter}
	counter := ins.Counter
	sent := counter("tiercache.invalidation.messages.sent", "{message}",
		"Messages Redis accepted from this bus, by kind (keys, flush, heartbeat, announcement).")
	received := counter("tiercache.invalidation.messages.received", "{message}",
		"Messages received from other buses, by kind (keys, flush, heartbeat, announcement).")
	keysSent := counter("tiercache.invalidation.keys.sent", "{key}",
		"Keys in the messages Redis accepted from this bus.")
	keysInvalidated := counter("tiercache.invalidation.keys.invalidated", "{key}",
		"Keys received from other buses and passed to at least one subscribed cache.")
	gaps := counter("tiercache.invalidation.gaps", "{gap}",
		"Sequence gaps: messages from another bus lost on the way.")
	flushes := counter("tiercache.invalidation.flushes", "{flush}",
		"Requests to flush subscribed caches, by reason (gap, resubscribe, silence: every cache; remote: one namespace's).")
	decodeErrors := counter("tiercache.invalidation.decode_errors", "{message}",
		"Received payloads the decoder rejected.")
	publishErrors := counter("tiercache.invalidation.publish_errors", "{message}",
		"Messages and heartbeats Redis did not accept.")
	resubscriptions := counter("tiercache.invalidation.resubscriptions", "{resubscription}",
		"Channel subscriptions renewed (after a reconnect, a slot migration or a silence).")
	lag := ins.Histogram("tiercache.invalidation.lag", "s",
		"Publish-to-evict lag: from the sender building a keys message to this bus's invalidate callbacks having returned.",
		lagBoundsSeconds())
	if err := ins.Err(); err != nil {
		return nil, fmt.Errorf("invalidation: creating instruments: %w", err)
	}

	type reading struct {
		inst metric.Int64Observable
		opt  metric.ObserveOption
		read func() uint64
	}
	with := func(kv ...attribute.KeyValue) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(kv...))
	}
	kind := func(k string) metric.ObserveOption { return with(AttrMessageKind.String(k)) }
	reason := func(r string) metric.ObserveOption { return with(AttrFlushReason.String(r)) }
	plain := with()
	readings := []reading{
		{sent, kind("keys"), c.keysMsgsSent.Load},
		{sent, kind("flush"), c.flushMsgsSent.Load},
		{sent, kind("heartbeat"), c.heartbeatsSent.Load},
		{received, kind("keys"), c.keysMsgsReceived.Load},
		{received, kind("flush"), c.flushRemote.Load},
		{received, kind("heartbeat"), c.heartbeatsReceived.Load},
		{keysSent, plain, c.keysSent.Load},
		{keysInvalidated, plain, c.keysInvalidated.Load},
		{gaps, plain, c.gaps.Load},
		{flushes, reason("gap"), c.flushGap.Load},
		{flushes, reason("resubscribe"), c.flushResubscribe.Load},
		{flushes, reason("silence"), c.flushSilence.Load},
		{flushes, reason("remote"), c.flushRemote.Load},
		{flushes, reason("unhealthy"), c.flushUnhealthy.Load},
		{flushes, reason("undecodable"), c.flushUndecodable.Load},
		{sent, kind("announcement"), c.announcementsSent.Load},
		{received, kind("announcement"), c.announcementsReceived.Load},
		{decodeErrors, plain, c.decodeErrors.Load},
		{publishErrors, plain, c.publishErrors.Load},
		{resubscriptions, plain, c.resubscribes.Load},
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, r := range readings {
			o.ObserveInt64(r.inst, int64(r.read()), r.opt)
		}
		return nil
	}, sent, received, keysSent, keysInvalidated, gaps, flushes, decodeErrors, publishErrors, resubscriptions)
	if err != nil {
		return nil, fmt.Errorf("invalidation: registering metrics callback: %w", err)
	}
	return &telemetry{lag: lag, reg: reg}, nil
}

// recordLag records one publish-to-evict lag.
func (t *telemetry) recordLag(d time.Duration) {
	t.lag.Record(context.Background(), d.Seconds())
}

// close unregisters the callback: collections after it see nothing of the
// counters of the bus.
func (t *telemetry) close() error {
	return t.reg.Unregister()
}
