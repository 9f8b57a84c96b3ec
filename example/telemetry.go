package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/tiercache/tiercache/tiered"
)

// serviceName is the service.name of the service's resource, unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.
const serviceName = "tiercache-example"

// durationBuckets are the histogram buckets, in seconds, of the cache's
// duration metrics (tiercache.loader.duration, tiercache.remote.duration,
// tiercache.lease.wait.duration). Package tiered gives them no advisory
// buckets, so the SDK's defaults (0, 5, 10, 25, ... 10000) would apply:
// made for milliseconds, in seconds they would put every Redis round trip
// and loader call in the first bucket. The view is limited to the scope
// of package tiered, so that it does not override the buckets other
// instruments choose (the invalidation bus's lag, otelhttp's durations).
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// telemetry is the service's OpenTelemetry SDK: a MeterProvider read by a
// Prometheus registry (served on GET /metrics) and a TracerProvider that
// exports to stdout and/or OTLP, or a no-op one when no exporter is asked
// for.
type telemetry struct {
	meterProvider  *sdkmetric.MeterProvider
	tracerProvider trace.TracerProvider
	propagator     propagation.TextMapPropagator
	// metrics serves the registry in the Prometheus text format.
	metrics http.Handler
	// shutdowns flush and stop the providers, in order.
	shutdowns []func(context.Context) error
}

// newTelemetry builds the providers cfg asks for. Traces go to stdout when
// cfg.TraceStdout is set, to OTLP over HTTP when cfg.OTLPTraces is set (the
// exporter reads the standard OTEL_EXPORTER_OTLP_* variables: endpoint,
// headers, timeout, TLS), and to cfg.SpanExporter; with none of them, the
// tracer provider is a no-op. The caller must call shutdown.
func newTelemetry(ctx context.Context, cfg Config, log *slog.Logger) (_ *telemetry, err error) {
	t := &telemetry{
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.shutdown(context.WithoutCancel(ctx)))
		}
	}()

	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the default name.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}

	// Metrics: a registry of the service's own, not Prometheus's global
	// default one, so that several services in one process (tests) do not
	// register the same collectors twice.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	t.meterProvider = sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(exporter),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{
				Scope: instrumentation.Scope{Name: tiered.ScopeName},
				Kind:  sdkmetric.InstrumentKindHistogram,
				Unit:  "s",
			},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: durationBuckets}},
		)))
	t.shutdowns = append(t.shutdowns, t.meterProvider.Shutdown)
	t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})

	// Traces.
	var tpOpts []sdktrace.TracerProviderOption
	var exporters []string
	if cfg.TraceStdout {
		w := cfg.TraceOutput
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("stdout trace exporter: %w", err)
		}
		// Synchronous, so that a span shows as soon as it ends: this
		// exporter is for looking at a few requests, not for load.
		tpOpts = append(tpOpts, sdktrace.WithSyncer(exp))
		exporters = append(exporters, "stdout")
	}
	if cfg.OTLPTraces {
		if p := otlpProtocol(); p != "" && p != "http/protobuf" {
			log.Warn("this example exports traces over OTLP/HTTP (protobuf) only; ignoring the protocol asked for",
				"protocol", p)
		}
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
		exporters = append(exporters, "otlp")
	}
	if cfg.SpanExporter != nil {
		tpOpts = append(tpOpts, sdktrace.WithSyncer(cfg.SpanExporter))
		exporters = append(exporters, "custom")
	}
	if len(exporters) == 0 {
		// No exporter: spans would be built only to be dropped.
		t.tracerProvider = tracenoop.NewTracerProvider()
		log.Info("tracing off (use -trace-stdout or set OTEL_EXPORTER_OTLP_ENDPOINT to export spans)")
	} else {
		tp := sdktrace.NewTracerProvider(append(tpOpts, sdktrace.WithResource(res))...)
		t.tracerProvider = tp
		t.shutdowns = append(t.shutdowns, tp.Shutdown)
		attrs := []any{"exporters", exporters}
		if cfg.OTLPTraces {
			attrs = append(attrs, "otlp_endpoint", otlpEndpoint(os.Getenv))
		}
		log.Info("tracing on", attrs...)
	}
	return t, nil
}

// installGlobal makes t's providers and propagator the OpenTelemetry
// globals, for code that uses them by default (libraries instrumented
// without an explicit provider), and routes the SDK's internal errors (a
// failed export) to log.
func (t *telemetry) installGlobal(log *slog.Logger) {
	otel.SetMeterProvider(t.meterProvider)
	otel.SetTracerProvider(t.tracerProvider)
	otel.SetTextMapPropagator(t.propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "error", err)
	}))
}

// instrument wraps h with otelhttp: a server span per request (the parent
// of the cache's spans), named after the route, continuing the trace of an
// incoming traceparent header, and the http.server.* metrics. Scrapes of
// /metrics are left out.
func (t *telemetry) instrument(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "http.server",
		otelhttp.WithMeterProvider(t.meterProvider),
		otelhttp.WithTracerProvider(t.tracerProvider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/metrics" }))
}

// shutdown flushes and stops the providers: pending spans are exported.
// It waits at most until ctx ends.
func (t *telemetry) shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdowns {
		errs = append(errs, f(ctx))
	}
	t.shutdowns = nil
	return errors.Join(errs...)
}

// shutdownTelemetry is run's deferred shutdown of t: it gives the flush 5 s
// and logs, rather than returns, a failure (the service itself stopped
// cleanly; a collector that is down should not change that).
func shutdownTelemetry(ctx context.Context, t *telemetry, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.shutdown(sctx); err != nil {
		log.Warn("flushing telemetry", "error", err)
	}
}

// otlpEndpoint returns where OTLP traces go by the standard variables, or
// "" when neither is set.
func otlpEndpoint(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// otlpProtocol returns the OTLP protocol the standard variables ask for
// traces, or "".
func otlpProtocol() string {
	if p := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p != "" {
		return p
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
}
