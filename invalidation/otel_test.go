package invalidation

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meterRig is a meter provider with a manual reader, for one bus.
type meterRig struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newMeterRig(t *testing.T) *meterRig {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return &meterRig{reader: reader, mp: mp}
}

func (r *meterRig) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return rm
}

// metricNamed returns the metric name of the bus's scope in rm.
func metricNamed(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// counter returns the value of the counter name at the data point whose
// attributes are exactly attrs, and whether there is one.
func counter(rm metricdata.ResourceMetrics, name string, attrs ...attribute.KeyValue) (int64, bool) {
	m, ok := metricNamed(rm, name)
	if !ok {
		return 0, false
	}
	want := attribute.NewSet(attrs...)
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Value, true
		}
	}
	return 0, false
}

func lagPoints(rm metricdata.ResourceMetrics) []metricdata.HistogramDataPoint[float64] {
	m, ok := metricNamed(rm, "tiercache.invalidation.lag")
	if !ok {
		return nil
	}
	return m.Data.(metricdata.Histogram[float64]).DataPoints
}

// counterWant is one expected counter value.
type counterWant struct {
	name  string
	attrs []attribute.KeyValue
	want  int64
}

func checkCounters(t *testing.T, bus string, rm metricdata.ResourceMetrics, wants []counterWant) {
	t.Helper()
	for _, w := range wants {
		got, ok := counter(rm, w.name, w.attrs...)
		if !ok {
			t.Errorf("%s: %s%v: no data point", bus, w.name, w.attrs)
			continue
		}
		if got != w.want {
			t.Errorf("%s: %s%v = %d, want %d", bus, w.name, w.attrs, got, w.want)
		}
	}
}

var (
	attrKeys      = AttrMessageKind.String("keys")
	attrFlush     = AttrMessageKind.String("flush")
	attrHeartbeat = AttrMessageKind.String("heartbeat")
)

func TestMetricsPublishAndReceive(t *testing.T) {
	ctx := ctxT(t)
	rigA, rigB := newMeterRig(t), newMeterRig(t)
	// One channel and no heartbeat during the test: the counts are exact.
	opts := []Option{WithChannelPrefix(uniqueName(t)), WithShards(1), WithHeartbeatInterval(time.Minute)}
	a := newBus(t, standaloneClient(t), append(opts, WithMeterProvider(rigA.mp))...)
	b := newBus(t, standaloneClient(t), append(opts, WithMeterProvider(rigB.mp))...)
	r := newRecorder()
	r.subscribe(t, b, "users")

	mustPublish(t, ctx, a, "users", "k0", "k1", "k2")
	eventually(t, 5*time.Second, "B to get the keys", func() bool { return r.has("k0", "k1", "k2") })
	// B's counters move after its callbacks return: a flush behind the keys
	// on the same channel shows when B is done with them.
	if err := a.PublishFlush(ctx, "users"); err != nil {
		t.Fatalf("PublishFlush: %v", err)
	}
	eventually(t, 5*time.Second, "B to flush", func() bool { return r.flushCount() == 1 })

	checkCounters(t, "A", rigA.collect(t), []counterWant{
		{"tiercache.invalidation.messages.sent", []attribute.KeyValue{attrKeys}, 1},
		{"tiercache.invalidation.messages.sent", []attribute.KeyValue{attrFlush}, 1},
		{"tiercache.invalidation.messages.sent", []attribute.KeyValue{attrHeartbeat}, 0},
		{"tiercache.invalidation.keys.sent", nil, 3},
		// A hears its own messages and ignores them.
		{"tiercache.invalidation.messages.received", []attribute.KeyValue{attrKeys}, 0},
		{"tiercache.invalidation.keys.invalidated", nil, 0},
		{"tiercache.invalidation.publish_errors", nil, 0},
	})
	rmB := rigB.collect(t)
	checkCounters(t, "B", rmB, []counterWant{
		{"tiercache.invalidation.messages.sent", []attribute.KeyValue{attrKeys}, 0},
		{"tiercache.invalidation.messages.received", []attribute.KeyValue{attrKeys}, 1},
		{"tiercache.invalidation.messages.received", []attribute.KeyValue{attrFlush}, 1},
		{"tiercache.invalidation.messages.received", []attribute.KeyValue{attrHeartbeat}, 0},
		{"tiercache.invalidation.keys.invalidated", nil, 3},
		{"tiercache.invalidation.flushes", []attribute.KeyValue{AttrFlushReason.String("remote")}, 1},
		{"tiercache.invalidation.flushes", []attribute.KeyValue{AttrFlushReason.String("gap")}, 0},
		{"tiercache.invalidation.gaps", nil, 0},
		{"tiercache.invalidation.decode_errors", nil, 0},
		{"tiercache.invalidation.resubscriptions", nil, 0},
	})
	pts := lagPoints(rmB)
	if len(pts) != 1 || pts[0].Count != 1 {
		t.Fatalf("B: lag data points %+v, want one with one sample", pts)
	}
	if got, want := pts[0].Bounds, lagBoundsSeconds(); !slices.Equal(got, want) {
		t.Errorf("B: lag bounds %v, want %v", got, want)
	}
	if s := b.Stats(); pts[0].Sum <= 0 || pts[0].Sum > 5 || s.Lag.Total() != 1 {
		t.Errorf("B: lag sum %vs (want in (0, 5]), Stats.Lag samples %d (want 1)", pts[0].Sum, s.Lag.Total())
	}
	if pts := lagPoints(rigA.collect(t)); len(pts) != 0 {
		t.Errorf("A: lag data points %+v, want none", pts)
	}
}

// TestMetricsDescribed checks that every instrument of the bus is named
// under tiercache.invalidation, with a unit and a description.
func TestMetricsDescribed(t *testing.T) {
	rig := newMeterRig(t)
	b := newBus(t, standaloneClient(t), WithChannelPrefix(uniqueName(t)), WithShards(1), WithMeterProvider(rig.mp))
	r := newRecorder()
	r.subscribe(t, b, "users")
	b.tel.recordLag(time.Millisecond) // the histogram reports once it has a sample
	want := []string{
		"tiercache.invalidation.decode_errors",
		"tiercache.invalidation.flushes",
		"tiercache.invalidation.gaps",
		"tiercache.invalidation.keys.invalidated",
		"tiercache.invalidation.keys.sent",
		"tiercache.invalidation.lag",
		"tiercache.invalidation.messages.received",
		"tiercache.invalidation.messages.sent",
		"tiercache.invalidation.publish_errors",
		"tiercache.invalidation.resubscriptions",
	}
	var got []string
	for _, sm := range rig.collect(t).ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, ScopeName)
		}
		for _, m := range sm.Metrics {
			got = append(got, m.Name)
			if m.Unit == "" || m.Description == "" {
				t.Errorf("%s: unit %q, description %q; want both", m.Name, m.Unit, m.Description)
			}
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && (!s.IsMonotonic || s.Temporality != metricdata.CumulativeTemporality) {
				t.Errorf("%s: monotonic %v, temporality %v; want a cumulative counter", m.Name, s.IsMonotonic, s.Temporality)
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("metrics\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMetricsGap(t *testing.T) {
	ctx := ctxT(t)
	rigA, rigB := newMeterRig(t), newMeterRig(t)
	d := &dropper{out: true, kind: kindKeys}
	opts := []Option{WithChannelPrefix(uniqueName(t)), WithShards(1), WithHeartbeatInterval(time.Minute)}
	a := newBus(t, standaloneClient(t), append(opts, withDrop(d.drop), WithMeterProvider(rigA.mp))...)
	b := newBus(t, standaloneClient(t), append(opts, WithMeterProvider(rigB.mp))...)
	r := newRecorder()
	r.subscribe(t, b, "users")

	mustPublish(t, ctx, a, "users", "k0")
	eventually(t, 5*time.Second, "k0", func() bool { return r.has("k0") })
	d.n.Store(1)
	mustPublish(t, ctx, a, "users", "k1") // lost
	mustPublish(t, ctx, a, "users", "k2")
	eventually(t, 5*time.Second, "k2", func() bool { return r.has("k2") })
	// B's counters move after its callbacks return: a flush behind k2 on the
	// same channel shows when B is done with k2.
	if err := a.PublishFlush(ctx, "users"); err != nil {
		t.Fatalf("PublishFlush: %v", err)
	}
	eventually(t, 5*time.Second, "B to flush for the gap and for A", func() bool { return r.flushCount() == 2 })

	checkCounters(t, "A", rigA.collect(t), []counterWant{
		// The dropped message is not sent.
		{"tiercache.invalidation.messages.sent", []attribute.KeyValue{attrKeys}, 2},
		{"tiercache.invalidation.keys.sent", nil, 2},
	})
	rmB := rigB.collect(t)
	checkCounters(t, "B", rmB, []counterWant{
		{"tiercache.invalidation.gaps", nil, 1},
		{"tiercache.invalidation.flushes", []attribute.KeyValue{AttrFlushReason.String("gap")}, 1},
		{"tiercache.invalidation.flushes", []attribute.KeyValue{AttrFlushReason.String("silence")}, 0},
		{"tiercache.invalidation.flushes", []attribute.KeyValue{AttrFlushReason.String("resubscribe")}, 0},
		{"tiercache.invalidation.flushes", []attribute.KeyValue{AttrFlushReason.String("remote")}, 1},
		{"tiercache.invalidation.messages.received", []attribute.KeyValue{attrKeys}, 2},
		{"tiercache.invalidation.keys.invalidated", nil, 2},
	})
	if pts := lagPoints(rmB); len(pts) != 1 || pts[0].Count != 2 {
		t.Errorf("B: lag data points %+v, want one with two samples", pts)
	}
}

func TestMetricsUnregisteredOnClose(t *testing.T) {
	ctx := ctxT(t)
	rig := newMeterRig(t)
	b, err := New(standaloneClient(t), WithChannelPrefix(uniqueName(t)), WithShards(1), WithMeterProvider(rig.mp))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	mustPublish(t, ctx, b, "users", "k")
	const name = "tiercache.invalidation.messages.sent"
	if got, ok := counter(rig.collect(t), name, attrKeys); !ok || got != 1 {
		t.Fatalf("before Close: %s{keys} = %d (reported %v), want 1", name, got, ok)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_ = b.Close() // idempotent: unregisters once
	// The SDK reports an asynchronous counter only for what a callback
	// observed during the collection: with the callback gone, nothing.
	for range 2 {
		if m, ok := metricNamed(rig.collect(t), name); ok {
			if pts := m.Data.(metricdata.Sum[int64]).DataPoints; len(pts) != 0 {
				t.Fatalf("after Close: %s has data points %+v, want none", name, pts)
			}
		}
	}
}

// TestMetricsGlobalProvider checks the default: the global meter provider
// at New. Not parallel: it replaces the global provider for its duration.
func TestMetricsGlobalProvider(t *testing.T) {
	rig := newMeterRig(t)
	otel.SetMeterProvider(rig.mp)
	t.Cleanup(func() { otel.SetMeterProvider(noop.NewMeterProvider()) })
	b := newBus(t, standaloneClient(t), WithChannelPrefix(uniqueName(t)), WithShards(1))
	mustPublish(t, ctxT(t), b, "users", "k")
	if got, ok := counter(rig.collect(t), "tiercache.invalidation.keys.sent"); !ok || got != 1 {
		t.Errorf("keys.sent through the global provider = %d (reported %v), want 1", got, ok)
	}
}
