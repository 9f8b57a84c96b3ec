package middleware

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tiercache/tiercache/internal/otelx"
	"github.com/tiercache/tiercache/internal/stripe"
	"github.com/tiercache/tiercache/tiered"
)

// ScopeName is the instrumentation scope of the middleware's metrics.
const ScopeName = "github.com/tiercache/tiercache/middleware"

// Attribute keys of the middleware's metrics. Every metric also carries
// tiered.AttrCache ("tiercache.cache"): the name of the tiered cache the
// middleware stores in, as on that cache's own metrics.
const (
	// AttrCacheStatus is the outcome of a request, on
	// tiercache.http.requests: hit | revalidated | stale | collapsed | miss
	// | uncacheable | bypass.
	AttrCacheStatus = attribute.Key("tiercache.http.cache_status")
	// AttrReason is why stored responses were invalidated, on
	// tiercache.http.invalidations: unsafe_method | purge | purge_tag.
	AttrReason = attribute.Key("tiercache.http.reason")
)

// WithMeterProvider sets where the middleware's metrics go. Default: the
// global provider (otel.GetMeterProvider) at New. Nil is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return invalidOption("nil meter provider")
		}
		c.meterProvider = mp
		return nil
	}
}

// outcome is what the middleware did with a request, the value of
// AttrCacheStatus. It follows the Cache-Status field sent.
type outcome uint8

const (
	outHit         outcome = iota // "hit": a fresh stored response
	outRevalidated                // "hit" answered 304 Not Modified from the stored validators
	outStale                      // stale-while-revalidate or stale-if-error
	outCollapsed                  // fwd=...; stored; collapsed: another request's load answered it
	outMiss                       // fwd=...; stored (or only-if-cached 504): the origin ran, its response was stored
	outUncacheable                // fwd=... without stored: the origin ran, nothing was stored
	outBypass                     // fwd=bypass, fwd=method: the cache did not handle the request
	outCount
)

var outcomeNames = [outCount]string{"hit", "revalidated", "stale", "collapsed", "miss", "uncacheable", "bypass"}

// reason is why stored responses were invalidated, the value of AttrReason.
type reason uint8

const (
	reasonUnsafe   reason = iota // a successful POST, PUT, PATCH, DELETE...
	reasonPurge                  // Purge
	reasonPurgeTag               // PurgeTag, one per tag
	reasonCount
)

var reasonNames = [reasonCount]string{"unsafe_method", "purge", "purge_tag"}

// metrics are the middleware's counters: atomics incremented on the request
// path and read by one asynchronous callback at collection time, so that
// nothing on a hit touches OpenTelemetry or allocates. Request outcomes are
// striped (hits run in parallel on every core); the rest are rare.
type metrics struct {
	requests      [outCount]stripe.Counter
	stored        atomic.Uint64
	validated     atomic.Uint64
	invalidations [reasonCount]atomic.Uint64
	reg           metric.Registration
}

func (m *metrics) request(o outcome) { m.requests[o].Add(1) }

// Stats is a snapshot of a middleware's counters: the values its metrics
// report (see Metrics in the package documentation). Every counter only
// grows.
type Stats struct {
	Hits        uint64 // fresh stored responses served (cache_status hit)
	Revalidated uint64 // 304 Not Modified from a fresh stored response (revalidated)
	Stale       uint64 // stale responses served: stale-while-revalidate, stale-if-error (stale)
	Collapsed   uint64 // answered by another request's load (collapsed)
	Misses      uint64 // went to the origin, its response stored; only-if-cached 504s (miss)
	Uncacheable uint64 // went to the origin, nothing stored (uncacheable)
	Bypassed    uint64 // not handled by the cache: unsafe methods, Range... (bypass)
	Stored      uint64 // origin responses stored, background refreshes included
	// Validated counts stale responses the origin confirmed with 304 Not
	// Modified (conditional refreshes, background ones included): each
	// one is a body the origin did not send. It is not an OpenTelemetry
	// metric.
	Validated uint64

	// Invalidations, by reason.
	InvalidatedURLs uint64 // URLs invalidated by successful unsafe requests (unsafe_method)
	Purges          uint64 // successful Purge calls (purge)
	PurgedTags      uint64 // tags purged by PurgeTag (purge_tag)
}

// Stats returns the middleware's counters. It is safe to call at any time,
// also after Close.
func (m *Middleware) Stats() Stats {
	c := &m.met
	return Stats{
		Hits:            c.requests[outHit].Load(),
		Revalidated:     c.requests[outRevalidated].Load(),
		Stale:           c.requests[outStale].Load(),
		Collapsed:       c.requests[outCollapsed].Load(),
		Misses:          c.requests[outMiss].Load(),
		Uncacheable:     c.requests[outUncacheable].Load(),
		Bypassed:        c.requests[outBypass].Load(),
		Stored:          c.stored.Load(),
		Validated:       c.validated.Load(),
		InvalidatedURLs: c.invalidations[reasonUnsafe].Load(),
		Purges:          c.invalidations[reasonPurge].Load(),
		PurgedTags:      c.invalidations[reasonPurgeTag].Load(),
	}
}

func (m *metrics) invalidated(r reason, n int) { m.invalidations[r].Add(uint64(n)) }

// register creates the instruments on mp and registers the callback that
// reads the counters; unregister undoes it.
func (m *metrics) register(mp metric.MeterProvider, cacheName string) error {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(ScopeName)
	ins := otelx.Instruments{Meter: meter}
	counter := ins.Counter
	requests := counter("tiercache.http.requests", "{request}", "Requests by what the cache did with them (tiercache.http.cache_status).")
	stored := counter("tiercache.http.stored", "{response}", "Origin responses stored in the cache.")
	invalidations := counter("tiercache.http.invalidations", "{invalidation}", "Stored URLs and tags invalidated, by reason (tiercache.http.reason).")
	if err := ins.Err(); err != nil {
		return fmt.Errorf("middleware: creating instruments: %w", err)
	}
	cacheAttr := tiered.AttrCache.String(cacheName)
	var outOpts [outCount]metric.ObserveOption
	for o := range outCount {
		outOpts[o] = metric.WithAttributeSet(attribute.NewSet(cacheAttr, AttrCacheStatus.String(outcomeNames[o])))
	}
	var reasonOpts [reasonCount]metric.ObserveOption
	for r := range reasonCount {
		reasonOpts[r] = metric.WithAttributeSet(attribute.NewSet(cacheAttr, AttrReason.String(reasonNames[r])))
	}
	plain := metric.WithAttributeSet(attribute.NewSet(cacheAttr))
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i := range m.requests {
			o.ObserveInt64(requests, int64(m.requests[i].Load()), outOpts[i])
		}
		o.ObserveInt64(stored, int64(m.stored.Load()), plain)
		for i := range m.invalidations {
			o.ObserveInt64(invalidations, int64(m.invalidations[i].Load()), reasonOpts[i])
		}
		return nil
	}, requests, stored, invalidations)
	if err != nil {
		return fmt.Errorf("middleware: registering metrics callback: %w", err)
	}
	m.reg = reg
	return nil
}

func (m *metrics) unregister() {
	if m.reg != nil {
		m.reg.Unregister() //nolint:errcheck // nothing to do about it
	}
}
