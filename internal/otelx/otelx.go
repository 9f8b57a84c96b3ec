// Package otelx registers OpenTelemetry instruments for tiercache's packages
// and collects the registration errors, so that each package states its
// instruments in one line each and checks one error.
package otelx

import (
	"errors"

	"go.opentelemetry.io/otel/metric"
)

// Instruments creates instruments on Meter and remembers every error. The
// zero value is not usable: set Meter. Not safe for concurrent use (it is
// meant for a constructor).
type Instruments struct {
	Meter metric.Meter
	errs  []error
}

// Counter creates an asynchronous int64 counter.
func (r *Instruments) Counter(name, unit, desc string) metric.Int64ObservableCounter {
	i, err := r.Meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	r.errs = append(r.errs, err)
	return i
}

// Gauge creates an asynchronous int64 gauge.
func (r *Instruments) Gauge(name, unit, desc string) metric.Int64ObservableGauge {
	i, err := r.Meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	r.errs = append(r.errs, err)
	return i
}

// Histogram creates a float64 histogram with the given bucket boundaries
// (nil: the SDK's defaults).
func (r *Instruments) Histogram(name, unit, desc string, bounds []float64) metric.Float64Histogram {
	opts := []metric.Float64HistogramOption{metric.WithUnit(unit), metric.WithDescription(desc)}
	if bounds != nil {
		opts = append(opts, metric.WithExplicitBucketBoundaries(bounds...))
	}
	h, err := r.Meter.Float64Histogram(name, opts...)
	r.errs = append(r.errs, err)
	return h
}

// Err returns the errors of every instrument created so far, joined; nil if
// there were none.
func (r *Instruments) Err() error { return errors.Join(r.errs...) }
