package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

type telemetryRig struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	opts   []tiered.Option
}

func newTelemetryRig(t *testing.T) *telemetryRig {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { mp.Shutdown(context.Background()); tp.Shutdown(context.Background()) })
	return &telemetryRig{reader: reader, spans: spans, tp: tp,
		opts: []tiered.Option{tiered.WithMeterProvider(mp), tiered.WithTracerProvider(tp)}}
}

// sum returns the value of the counter name at the data point carrying every
// attribute in want (0 when there is none).
func (r *telemetryRig) sum(t *testing.T, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if hasAll(p.Attributes, want) {
						return p.Value
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if hasAll(p.Attributes, want) {
						return p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if hasAll(p.Attributes, want) {
						return int64(p.Count)
					}
				}
			}
		}
	}
	return 0
}

func hasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

func tierResult(tier, result string) []attribute.KeyValue {
	return []attribute.KeyValue{tiered.AttrTier.String(tier), tiered.AttrResult.String(result)}
}

func TestMetricsMove(t *testing.T) {
	rig := newTelemetryRig(t)
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	name := redistest.Name(t)
	a := newNode[user](t, name, rdb, rig.opts...)
	b := newNode[user](t, name, rdb, rig.opts...)
	var loader countingLoader
	cacheAttr := tiered.AttrCache.String(name)

	steps := []struct {
		name   string
		do     func()
		metric string
		attrs  []attribute.KeyValue
		want   int64
	}{
		{"load", func() { a.GetOrLoad(ctx, "1", loader.load) }, "tiercache.requests", tierResult("loader", "hit"), 1},
		{"load counted", func() {}, "tiercache.loader.calls", nil, 1},
		{"load timed", func() {}, "tiercache.loader.duration", nil, 1},
		{"lease", func() {}, "tiercache.lease.acquired", nil, 1},
		{"l2 miss", func() {}, "tiercache.requests", tierResult("l2", "miss"), 1},
		{"l1 hit", func() { a.GetOrLoad(ctx, "1", loader.load) }, "tiercache.requests", tierResult("l1", "hit"), 1},
		{"l2 hit", func() { b.GetOrLoad(ctx, "1", loader.load) }, "tiercache.requests", tierResult("l2", "hit"), 1},
		{"l2 timed", func() {}, "tiercache.remote.duration", []attribute.KeyValue{tiered.AttrOperation.String("acquire")}, 2},
		{"not found", func() {
			a.GetOrLoad(ctx, "nf", func(context.Context, string) (user, error) { return user{}, tiered.ErrNotFound })
		}, "tiercache.requests", tierResult("loader", "not_found"), 1},
		{"l1 not found", func() { a.GetOrLoad(ctx, "nf", loader.load) }, "tiercache.requests", tierResult("l1", "not_found"), 1},
		{"loader error", func() {
			a.GetOrLoad(ctx, "e", func(context.Context, string) (user, error) { return user{}, errors.New("x") })
		}, "tiercache.requests", tierResult("loader", "error"), 1},
	}
	for _, s := range steps {
		s.do()
		attrs := append([]attribute.KeyValue{cacheAttr}, s.attrs...)
		if got := rig.sum(t, s.metric, attrs...); got != s.want {
			t.Errorf("%s: %s%v = %d, want %d", s.name, s.metric, s.attrs, got, s.want)
		}
	}
}

func TestLeaseWaitMetric(t *testing.T) {
	rig := newTelemetryRig(t)
	rdb := redistest.Standalone(t)
	name := redistest.Name(t)
	a := newNode[user](t, name, rdb)
	b := newNode[user](t, name, rdb, rig.opts...)
	started, release := make(chan struct{}), make(chan struct{})
	go a.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
		close(started)
		<-release
		return user{ID: key}, nil
	})
	<-started
	done := make(chan struct{})
	go func() { b.GetOrLoad(context.Background(), "k", (&countingLoader{}).load); close(done) }()
	eventually(t, 5*time.Second, "B never waited", func() bool { return b.Stats().LeaseWaits == 1 })
	close(release)
	<-done
	if got := rig.sum(t, "tiercache.lease.waits", tiered.AttrCache.String(name)); got != 1 {
		t.Errorf("lease.waits = %d, want 1", got)
	}
	if got := rig.sum(t, "tiercache.lease.wait.duration", tiered.AttrCache.String(name)); got != 1 {
		t.Errorf("lease.wait.duration count = %d, want 1", got)
	}
}

func TestSpans(t *testing.T) {
	rig := newTelemetryRig(t)
	rdb := redistest.Standalone(t)
	n := newNode[user](t, redistest.Name(t), rdb, rig.opts...)
	ctx, parent := rig.tp.Tracer("test").Start(context.Background(), "request")
	var loaderTrace trace.TraceID
	_, err := n.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (user, error) {
		loaderTrace = trace.SpanContextFromContext(ctx).TraceID()
		return user{ID: key}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	parent.End()
	if loaderTrace != parent.SpanContext().TraceID() {
		t.Fatalf("loader ran in trace %v, want the caller's %v", loaderTrace, parent.SpanContext().TraceID())
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rig.spans.Ended() {
		byName[s.Name()] = s
	}
	get, ok := byName["tiercache.get"]
	if !ok {
		t.Fatalf("no tiercache.get span; spans: %v", keys(byName))
	}
	if get.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("tiercache.get parent = %v, want the caller's span", get.Parent().SpanID())
	}
	for _, child := range []string{"tiercache.l2.acquire", "tiercache.load", "tiercache.l2.compare_and_swap"} {
		s, ok := byName[child]
		if !ok {
			t.Errorf("no %s span; spans: %v", child, keys(byName))
			continue
		}
		if s.Parent().SpanID() != get.SpanContext().SpanID() {
			t.Errorf("%s is not a child of tiercache.get", child)
		}
	}

	// An L1 hit makes no span.
	before := len(rig.spans.Ended())
	n.GetOrLoad(ctx, "k", (&countingLoader{}).load)
	if after := len(rig.spans.Ended()); after != before {
		t.Errorf("an L1 hit made %d spans", after-before)
	}

	// ErrNotFound is not a span error.
	n.GetOrLoad(context.Background(), "nf", func(context.Context, string) (user, error) { return user{}, tiered.ErrNotFound })
	for _, s := range rig.spans.Ended()[before:] {
		if s.Status().Code == codes.Error {
			t.Errorf("span %s has error status for a not-found", s.Name())
		}
	}
}

func TestSpanOnRedisError(t *testing.T) {
	rig := newTelemetryRig(t)
	srv := redistest.NewServer(t)
	n := newNode[user](t, redistest.Name(t), srv.Client(t), append(rig.opts, tiered.WithRemoteTimeout(200*time.Millisecond))...)
	srv.Stop(t)
	if _, _, err := n.Get(context.Background(), "k"); err == nil {
		t.Fatal("Get with Redis down succeeded")
	}
	var found bool
	for _, s := range rig.spans.Ended() {
		if s.Name() != "tiercache.get" && s.Name() != "tiercache.l2.get" {
			continue
		}
		found = true
		if s.Status().Code != codes.Error {
			t.Errorf("%s status = %v, want Error", s.Name(), s.Status().Code)
		}
		var hasType bool
		for _, kv := range s.Attributes() {
			hasType = hasType || kv.Key == "error.type"
		}
		if !hasType {
			t.Errorf("%s has no error.type", s.Name())
		}
	}
	if !found {
		t.Fatal("no spans recorded")
	}
}

func TestL1HitAllocatesNothingWithSDK(t *testing.T) {
	rig := newTelemetryRig(t)
	l1, _ := local.New[user]()
	c, err := tiered.New[user]("alloc", l1, nil, rig.opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	c.Set(ctx, "hot", user{ID: "hot"})
	load := (&countingLoader{}).load
	if n := testing.AllocsPerRun(1000, func() { c.GetOrLoad(ctx, "hot", load) }); n != 0 {
		t.Fatalf("L1 hit with the SDK provider allocates %v times, want 0", n)
	}
	if got := rig.sum(t, "tiercache.requests", tiered.AttrCache.String("alloc"), tiered.AttrTier.String("l1"), tiered.AttrResult.String("hit")); got < 1000 {
		t.Fatalf("l1 hits exported = %d, want >= 1000", got)
	}
	if got := rig.sum(t, "tiercache.l1.entries", tiered.AttrCache.String("alloc")); got != 1 {
		t.Fatalf("l1 entries = %d, want 1", got)
	}
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
