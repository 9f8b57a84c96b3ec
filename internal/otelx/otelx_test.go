package otelx_test

import (
	"errors"
	"testing"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/tiercache/tiercache/internal/otelx"
)

type failingMeter struct {
	noop.Meter
}

var errBroken = errors.New("broken meter")

func (failingMeter) Int64ObservableCounter(string, ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	return noop.Int64ObservableCounter{}, errBroken
}

func TestErrCollectsEveryFailure(t *testing.T) {
	r := otelx.Instruments{Meter: failingMeter{}}
	r.Gauge("g", "{x}", "a gauge")
	r.Histogram("h", "s", "a histogram", []float64{0.1, 1})
	if err := r.Err(); err != nil {
		t.Fatalf("Err = %v before any failure", err)
	}
	r.Counter("c", "{x}", "a counter")
	if err := r.Err(); !errors.Is(err, errBroken) {
		t.Fatalf("Err = %v, want the counter's error", err)
	}
}
