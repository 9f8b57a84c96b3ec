package debugpage

import (
	"time"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// history is what the page remembers of one source: its samples of the
// last window (plus the newest one older than the window, the base of a
// full window) and, for a bus, its recent flushes.
type history struct {
	samples []sample // oldest first
	flushes []FlushEvent
}

type sample struct {
	at    time.Time
	cache tiered.Stats
	bus   invalidation.Stats
}

func (p *Page) historyLocked(src any) *history {
	h := p.hist[src]
	if h == nil {
		h = &history{}
		p.hist[src] = h
	}
	return h
}

// add appends s and drops the samples no window needs any more.
func (h *history) add(s sample, window time.Duration) {
	h.samples = append(h.samples, s)
	start := s.at.Add(-window)
	n := 0
	for n+1 < len(h.samples) && !h.samples[n+1].at.After(start) {
		n++
	}
	h.samples = h.samples[n:]
}

// base returns the sample the window ending at now starts from: the oldest
// one no older than the window, else the newest one (the window is then as
// long as the page has known the source).
func (h *history) base(now time.Time, window time.Duration) (sample, bool) {
	if len(h.samples) == 0 {
		return sample{}, false
	}
	start := now.Add(-window)
	for _, s := range h.samples {
		if !s.at.Before(start) {
			return s, true
		}
	}
	return h.samples[len(h.samples)-1], true
}

func (p *Page) sampleCacheLocked(src CacheSource, st tiered.Status, now time.Time) {
	p.historyLocked(src).add(sample{at: now, cache: st.Stats}, p.cfg.window)
}

func (p *Page) sampleBusLocked(b BusSource, now time.Time) {
	h := p.historyLocked(b)
	st := b.Stats()
	if n := len(h.samples); n > 0 {
		prev := h.samples[n-1]
		for _, r := range flushReasons {
			if d := r.count(st.Flushes) - r.count(prev.bus.Flushes); d > 0 {
				h.flushes = append(h.flushes, FlushEvent{Reason: r.name, Count: d, After: prev.at, Before: now})
			}
		}
		if over := len(h.flushes) - p.cfg.recentFlushes; over > 0 {
			h.flushes = append(h.flushes[:0], h.flushes[over:]...)
		}
	}
	h.add(sample{at: now, bus: st}, p.cfg.window)
}

// FlushEvent is a batch of flushes of one reason seen between two samples.
type FlushEvent struct {
	// Reason is "gap", "resubscribe", "silence", "remote", "unhealthy" or
	// "undecodable" (see invalidation.FlushStats).
	Reason string `json:"reason"`
	// Count is the number of flushes.
	Count uint64 `json:"count"`
	// After and Before bound when they happened (two sample times).
	After  time.Time `json:"after"`
	Before time.Time `json:"before"`
}

var flushReasons = []struct {
	name  string
	count func(invalidation.FlushStats) uint64
}{
	{"gap", func(f invalidation.FlushStats) uint64 { return f.Gap }},
	{"resubscribe", func(f invalidation.FlushStats) uint64 { return f.Resubscribe }},
	{"silence", func(f invalidation.FlushStats) uint64 { return f.Silence }},
	{"remote", func(f invalidation.FlushStats) uint64 { return f.Remote }},
	{"unhealthy", func(f invalidation.FlushStats) uint64 { return f.Unhealthy }},
	{"undecodable", func(f invalidation.FlushStats) uint64 { return f.Undecodable }},
}
