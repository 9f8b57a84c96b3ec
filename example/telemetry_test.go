package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tiercache/tiercache/tiered"
)

// TestMetrics scrapes GET /metrics after three reads of one product, and
// checks the caches' metrics under the names the Prometheus exporter gives
// them: dots become underscores, counters end in _total, and the unit "s"
// becomes _seconds.
func TestMetrics(t *testing.T) {
	c := startService(t, Config{CacheName: "metrics-test", QueryDelay: 0})
	// An HTTP miss: the data cache misses L1 and L2, one load.
	c.product("/products/42", http.StatusOK)
	// An HTTP hit: the handler does not run.
	c.product("/products/42", http.StatusOK)
	// Past the HTTP cache (no-cache): a data cache L1 hit.
	c.doWith(http.Header{"Cache-Control": {"no-cache"}}, http.MethodGet, "/products/42", "", http.StatusOK, nil)

	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, want 200; body: %s", resp.StatusCode, body)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "text/plain" {
		t.Errorf("GET /metrics: Content-Type %q, want the Prometheus text format (text/plain)", resp.Header.Get("Content-Type"))
	}
	// The literal lines a user greps for (label order is the exporter's:
	// sorted by name).
	for _, want := range []string{
		"# TYPE tiercache_requests_total counter",
		`tiercache_cache="metrics-test",tiercache_result="hit",tiercache_tier="l1"} 1`,
		"# TYPE tiercache_loader_calls_total counter",
		"# TYPE tiercache_loader_duration_seconds histogram",
		"# TYPE tiercache_remote_duration_seconds histogram",
		"# TYPE tiercache_invalidation_messages_sent_total counter",
		"# TYPE tiercache_http_requests_total counter",
		`tiercache_cache="metrics-test-http",tiercache_http_cache_status="hit"} 1`,
		"# TYPE tiercache_http_stored_total counter",
		"# TYPE tiercache_http_invalidations_total counter",
		`target_info{service_name="tiercache-example"`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET /metrics does not contain %q", want)
		}
	}

	m := parseMetrics(t, bytes.NewReader(body))
	cache := map[string]string{"tiercache_cache": "metrics-test", "otel_scope_name": "github.com/tiercache/tiercache/tiered"}
	with := func(kv ...string) map[string]string {
		l := maps.Clone(cache)
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	httpCache := func(kv ...string) map[string]string {
		l := map[string]string{"tiercache_cache": "metrics-test-http", "otel_scope_name": "github.com/tiercache/tiercache/middleware"}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tiercache_requests_total", with("tiercache_tier", "l1", "tiercache_result", "hit"), 1},
		{"tiercache_requests_total", with("tiercache_tier", "l1", "tiercache_result", "miss"), 1},
		{"tiercache_requests_total", with("tiercache_tier", "l2", "tiercache_result", "miss"), 1},
		{"tiercache_requests_total", with("tiercache_tier", "l2", "tiercache_result", "hit"), 0},
		{"tiercache_requests_total", with("tiercache_tier", "loader", "tiercache_result", "hit"), 1},
		{"tiercache_loader_calls_total", cache, 1},
		{"tiercache_lease_acquired_total", cache, 1},
		{"tiercache_l1_entries", cache, 1},
		{"tiercache_loader_duration_seconds", cache, 1}, // a histogram: its count
		// A cold GetOrLoad reads L2 and takes the lease in one command
		// (read-or-lease), measured as an acquire, then fills.
		{"tiercache_remote_duration_seconds", with("tiercache_operation", "acquire"), 1},
		{"http_server_request_duration_seconds", map[string]string{"http_route": "/products/{id}", "http_response_status_code": "200"}, 3},
		{"tiercache_http_requests_total", httpCache("tiercache_http_cache_status", "miss"), 2}, // the first read, and the no-cache one
		{"tiercache_http_requests_total", httpCache("tiercache_http_cache_status", "hit"), 1},
		{"tiercache_http_requests_total", httpCache("tiercache_http_cache_status", "bypass"), 0},
		{"tiercache_http_stored_total", httpCache(), 2},
		{"tiercache_http_invalidations_total", httpCache("tiercache_http_reason", "purge_tag"), 0},
		{"target_info", map[string]string{"service_name": serviceName}, 1},
	} {
		if got := m.value(tc.name, tc.labels); got != tc.want {
			t.Errorf("%s with labels %v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}

	// The duration histograms have buckets in seconds, not the SDK's
	// default ones (made for milliseconds).
	var bounds []float64
	for _, b := range m.one("tiercache_loader_duration_seconds", cache).GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if want := append(slices.Clone(durationBuckets), math.Inf(1)); !slices.Equal(bounds, want) {
		t.Errorf("tiercache_loader_duration_seconds buckets %v, want %v", bounds, want)
	}
	// Scrapes are not measured.
	if got := m.find("http_server_request_duration_seconds", map[string]string{"http_route": "/metrics"}); len(got) != 0 {
		t.Errorf("scrapes of /metrics are measured: %v", got)
	}
}

// TestTraces checks that the data cache's spans have the request's server
// span as their parent, that the server span continues an incoming trace,
// and that an HTTP cache hit makes no cache span (an L1 hit never does).
func TestTraces(t *testing.T) {
	rec := &spanRecorder{}
	c := startService(t, Config{QueryDelay: 0, SpanExporter: rec})

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for range 2 { // a miss, then an HTTP cache hit (its L1)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, c.base+"/products/42", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /products/42: status %d", resp.StatusCode)
		}
	}
	c.stop() // every span has ended once run returns

	spans := rec.spans()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	servers := byName["GET /products/{id}"]
	if len(servers) != 2 {
		t.Fatalf("%d server spans GET /products/{id}, want 2; spans: %v", len(servers), spanNames(spans))
	}
	for _, s := range servers {
		if s.SpanKind() != trace.SpanKindServer || s.Parent().SpanID().String() != parentID ||
			s.SpanContext().TraceID().String() != traceID {
			t.Errorf("server span trace %s, parent %s, kind %v: want a server span continuing the incoming trace",
				s.SpanContext().TraceID(), s.Parent().SpanID(), s.SpanKind())
		}
	}
	// The HTTP cache's tiered cache makes spans too; those of the data
	// cache carry its name.
	var cacheSpans []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if strings.HasPrefix(s.Name(), "tiercache.") {
			cacheSpans = append(cacheSpans, s)
			if s.Parent().SpanID() == servers[1].SpanContext().SpanID() {
				t.Errorf("the HTTP cache hit made a span %s", s.Name())
			}
		}
	}
	byName = map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range cacheSpans {
		if cacheAttr(s) == c.name {
			byName[s.Name()] = append(byName[s.Name()], s)
		}
	}
	gets := byName["tiercache.get"]
	if len(gets) != 1 {
		t.Fatalf("%d tiercache.get spans of the data cache, want 1; spans: %v", len(gets), spanNames(spans))
	}
	get := gets[0]
	if get.Parent().SpanID() != servers[0].SpanContext().SpanID() {
		t.Errorf("tiercache.get's parent is %s, want the first request's server span %s",
			get.Parent().SpanID(), servers[0].SpanContext().SpanID())
	}
	for _, name := range []string{"tiercache.l2.acquire", "tiercache.load", "tiercache.l2.compare_and_swap"} {
		if len(byName[name]) != 1 || byName[name][0].Parent().SpanID() != get.SpanContext().SpanID() {
			t.Errorf("want one %s span, a child of tiercache.get; spans: %v", name, spanNames(spans))
		}
	}
	for _, s := range spans {
		if v, _ := s.Resource().Set().Value("service.name"); v.AsString() != serviceName {
			t.Errorf("span %s: service.name %q, want %q", s.Name(), v.AsString(), serviceName)
		}
	}
}

// TestTraceStdout checks that -trace-stdout prints the spans, as JSON.
func TestTraceStdout(t *testing.T) {
	var out bytes.Buffer // written by the service, read after run returned
	c := startService(t, Config{QueryDelay: 0, TraceStdout: true, TraceOutput: &out})
	c.product("/products/42", http.StatusOK)
	c.stop()

	var names []string
	dec := json.NewDecoder(&out)
	for {
		var span struct{ Name string }
		if err := dec.Decode(&span); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding the spans printed: %v", err)
		}
		names = append(names, span.Name)
	}
	for _, want := range []string{"GET /products/{id}", "tiercache.get", "tiercache.load"} {
		if !slices.Contains(names, want) {
			t.Errorf("spans printed %v, want %s among them", names, want)
		}
	}
}

// TestOTLPTraces runs the service with OTEL_EXPORTER_OTLP_ENDPOINT naming a
// fake collector and checks that the spans reach it at shutdown.
func TestOTLPTraces(t *testing.T) {
	var (
		mu    sync.Mutex
		names []string
		res   []string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, "want POST /v1/traces", http.StatusBadRequest)
			return
		}
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					res = append(res, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names = append(names, s.GetName())
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	defer collector.Close()

	// The exporter reads the variables itself. Unset the ones that would
	// win over OTEL_EXPORTER_OTLP_ENDPOINT.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "")
	cfg, err := parseConfig(nil, os.Getenv, io.Discard)
	if err != nil || !cfg.OTLPTraces {
		t.Fatalf("parseConfig with OTEL_EXPORTER_OTLP_ENDPOINT set: OTLPTraces %v, %v; want true", cfg.OTLPTraces, err)
	}
	c := startService(t, Config{QueryDelay: 0, OTLPTraces: cfg.OTLPTraces})
	c.product("/products/42", http.StatusOK)
	c.stop() // flushes the batch

	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"GET /products/{id}", "tiercache.get", "tiercache.load"} {
		if !slices.Contains(names, want) {
			t.Errorf("the collector received spans %v, want %s among them", names, want)
		}
	}
	if len(res) == 0 || res[0] != serviceName {
		t.Errorf("the collector received service.name %q, want %q", res, serviceName)
	}
}

// TestGlobalTelemetry checks that GlobalTelemetry installs the service's
// meter provider as the global one: what is measured through otel.Meter
// shows on /metrics.
func TestGlobalTelemetry(t *testing.T) {
	t.Cleanup(func() {
		// Do not leave a shut-down provider, or a logger of a finished
		// test, in the globals.
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Print(err) }))
	})
	c := startService(t, Config{QueryDelay: 0, GlobalTelemetry: true})
	probe, err := otel.Meter("example-test").Int64Counter("global.probe")
	if err != nil {
		t.Fatal(err)
	}
	probe.Add(t.Context(), 3)
	if got := c.metrics().value("global_probe_total", nil); got != 3 {
		t.Errorf("global_probe_total = %v, want 3", got)
	}
}

// metricFamilies is a parsed scrape of /metrics.
type metricFamilies struct {
	t   *testing.T
	fam map[string]*dto.MetricFamily
}

// metrics scrapes the service's /metrics.
func (c *testClient) metrics() metricFamilies {
	c.t.Helper()
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	return parseMetrics(c.t, resp.Body)
}

func parseMetrics(t *testing.T, r io.Reader) metricFamilies {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fam, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return metricFamilies{t: t, fam: fam}
}

// find returns the samples of the metric name whose labels include labels.
func (m metricFamilies) find(name string, labels map[string]string) []*dto.Metric {
	var out []*dto.Metric
	for _, s := range m.fam[name].GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// one returns the single sample of name with labels, or fails the test.
func (m metricFamilies) one(name string, labels map[string]string) *dto.Metric {
	m.t.Helper()
	got := m.find(name, labels)
	if len(got) != 1 {
		names := slices.Sorted(maps.Keys(m.fam))
		m.t.Fatalf("/metrics has %d samples of %s with labels %v, want 1 (metrics: %s)", len(got), name, labels, strings.Join(names, " "))
	}
	return got[0]
}

// value returns the value of a counter or gauge sample, or the count of a
// histogram's.
func (m metricFamilies) value(name string, labels map[string]string) float64 {
	m.t.Helper()
	s := m.one(name, labels)
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	case s.Histogram != nil:
		return float64(s.Histogram.GetSampleCount())
	}
	m.t.Fatalf("%s with labels %v: unexpected type %v", name, labels, m.fam[name].GetType())
	return 0
}

// spanRecorder is a span exporter that keeps every span; unlike
// tracetest.InMemoryExporter, it keeps them through Shutdown.
type spanRecorder struct {
	mu   sync.Mutex
	list []sdktrace.ReadOnlySpan
}

func (r *spanRecorder) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, spans...)
	return nil
}

func (r *spanRecorder) Shutdown(context.Context) error { return nil }

func (r *spanRecorder) spans() []sdktrace.ReadOnlySpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// cacheAttr returns a span's tiercache.cache attribute.
func cacheAttr(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Attributes() {
		if kv.Key == tiered.AttrCache {
			return kv.Value.AsString()
		}
	}
	return ""
}

func spanNames(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "[%s %s parent %s] ", s.Name(), s.SpanContext().SpanID(), s.Parent().SpanID())
	}
	return b.String()
}

// TestDurationBucketsView checks that the seconds buckets apply to the
// histograms of package tiered only: other instruments keep the buckets
// they ask for.
func TestDurationBucketsView(t *testing.T) {
	tel, err := newTelemetry(t.Context(), Config{}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.shutdown(context.WithoutCancel(t.Context()))
	cacheHist, err := tel.meterProvider.Meter(tiered.ScopeName).Float64Histogram("test.cache.duration", metric.WithUnit("s"))
	if err != nil {
		t.Fatal(err)
	}
	otherHist, err := tel.meterProvider.Meter("other").Float64Histogram("test.other.duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	cacheHist.Record(t.Context(), 0.001)
	otherHist.Record(t.Context(), 0.001)

	rec := httptest.NewRecorder()
	tel.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	m := parseMetrics(t, rec.Body)
	for name, want := range map[string][]float64{
		"test_cache_duration_seconds": append(slices.Clone(durationBuckets), math.Inf(1)),
		"test_other_duration_seconds": {1, 2, math.Inf(1)},
	} {
		var got []float64
		for _, b := range m.one(name, nil).GetHistogram().GetBucket() {
			got = append(got, b.GetUpperBound())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s buckets %v, want %v", name, got, want)
		}
	}
}
