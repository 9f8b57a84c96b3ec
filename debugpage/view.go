package debugpage

import (
	"fmt"
	"time"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// View is what the page shows, as served with ?format=json. Durations are
// in seconds (floating point); a ratio is null when its tier saw no
// requests in the window.
type View struct {
	Title string    `json:"title"`
	Time  time.Time `json:"time"`
	// Window is the configured window, in seconds.
	Window float64     `json:"window_seconds"`
	Caches []CacheView `json:"caches"`
	Buses  []BusView   `json:"buses"`
}

// CacheView is one cache.
type CacheView struct {
	Name string `json:"name"`
	// Recent covers the last window (or as long as the page has known the
	// cache, if shorter).
	Recent CacheWindow `json:"recent"`
	L1     L1View      `json:"l1"`
	// Flights counts keys being fetched past L1 now; LoadsInFlight loader
	// calls running now; Refreshing early refreshes running now.
	Flights       int   `json:"flights"`
	LoadsInFlight int64 `json:"loads_in_flight"`
	Refreshing    int   `json:"refreshing"`
	// Breakers has one entry per L2 shard; empty when the breaker is off.
	Breakers []BreakerView `json:"breakers"`
	// Totals are the cache's counters since it was made.
	Totals tiered.Stats `json:"totals"`
}

// CacheWindow is the activity of a cache over a window.
type CacheWindow struct {
	Seconds float64 `json:"seconds"`
	// L1: reads that looked in L1, and the share answered there (values and
	// cached not-founds).
	L1 TierView `json:"l1"`
	// L2: reads that went to L2, and the share answered there.
	L2 TierView `json:"l2"`
	// Loads: loader calls (a batch counts once), of which not found and
	// failed.
	Loads        uint64 `json:"loads"`
	LoadNotFound uint64 `json:"load_not_found"`
	LoadErrors   uint64 `json:"load_errors"`
	L2Errors     uint64 `json:"l2_errors"`
	// LeaseWaits counts waits on another node's load lease; LeaseWaitAvg is
	// their mean duration in seconds (0 without waits).
	LeaseWaits   uint64  `json:"lease_waits"`
	LeaseWaitAvg float64 `json:"lease_wait_avg_seconds"`
}

// TierView is the reads of one tier in a window.
type TierView struct {
	Requests uint64   `json:"requests"`
	Hits     uint64   `json:"hits"`
	Ratio    *float64 `json:"hit_ratio"`
}

// L1View is a cache's local store.
type L1View struct {
	Present bool `json:"present"`
	Sized   bool `json:"sized"`
	// EntriesKnown is false for a store bounded by cost (package local with
	// MaxCost), which knows its cost but not its entry count.
	EntriesKnown bool   `json:"entries_known"`
	Entries      uint64 `json:"entries"`
	Cost         uint64 `json:"cost"`
	Dropped      uint64 `json:"dropped"`
	Rejected     uint64 `json:"rejected"`
}

// BreakerView is the circuit breaker of one L2 shard.
type BreakerView struct {
	Shard    string `json:"shard"`
	State    string `json:"state"`
	Openings uint64 `json:"openings"`
	Rejected uint64 `json:"rejected"`
}

// BusView is one bus.
type BusView struct {
	Name string `json:"name"`
	// Origin is the bus's id in hex; empty when the source does not say.
	Origin  string `json:"origin,omitempty"`
	Sharded bool   `json:"sharded"`
	// Healthy is the bus's verdict (its own announcements come back in
	// time, every subscription works), and every channel healthy.
	Healthy bool `json:"healthy"`
	// Detection is D, the loss-detection time, in seconds; OwnLag the lag
	// of the newest own announcement that came back.
	Detection float64       `json:"detection_seconds"`
	OwnLag    float64       `json:"own_lag_seconds"`
	Recent    BusWindow     `json:"recent"`
	Channels  []ChannelView `json:"channels"`
	// Flushes are the recent flush events, oldest first (counted between
	// two samples, so their times are within one interval).
	Flushes []FlushEvent       `json:"recent_flushes"`
	Totals  invalidation.Stats `json:"totals"`
}

// BusWindow is the activity of a bus over a window.
type BusWindow struct {
	Seconds          float64 `json:"seconds"`
	MessagesSent     uint64  `json:"messages_sent"`
	MessagesReceived uint64  `json:"messages_received"`
	KeysInvalidated  uint64  `json:"keys_invalidated"`
	Gaps             uint64  `json:"gaps"`
	PublishErrors    uint64  `json:"publish_errors"`
	Flushes          uint64  `json:"flushes"`
	// LagP50 and LagP99 are publish-to-evict lag quantiles in seconds (upper
	// bounds of histogram buckets); LagSamples how many lags they cover.
	LagSamples uint64  `json:"lag_samples"`
	LagP50     float64 `json:"lag_p50_seconds"`
	LagP99     float64 `json:"lag_p99_seconds"`
}

// ChannelView is one channel of a bus.
type ChannelView struct {
	Name       string  `json:"name"`
	Subscribed bool    `json:"subscribed"`
	Healthy    bool    `json:"healthy"`
	SinceHeard float64 `json:"since_heard_seconds"`
	// LastLag is the publish-to-evict lag of the last keys message received
	// on the channel, in seconds (0 before the first).
	LastLag float64      `json:"last_lag_seconds"`
	Origins []OriginView `json:"origins"`
}

// OriginView is another bus heard on a channel.
type OriginView struct {
	Origin     string  `json:"origin"`
	Seq        uint64  `json:"seq"`
	SinceHeard float64 `json:"since_heard_seconds"`
	Silent     bool    `json:"silent"`
}

func ratio(hits, requests uint64) *float64 {
	if requests == 0 {
		return nil
	}
	r := float64(hits) / float64(requests)
	return &r
}

func originHex(o uint64) string { return fmt.Sprintf("%016x", o) }

// view builds what the page shows now.
func (p *Page) view() View {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.clock.Now()
	v := View{Title: p.cfg.title, Time: now, Window: p.cfg.window.Seconds(), Caches: []CacheView{}, Buses: []BusView{}}
	caches, buses := p.sourcesLocked()
	for _, c := range caches {
		if p.hist[c.src] == nil {
			p.sampleCacheLocked(c.src, c.status, now) // a group's new cache
		}
		v.Caches = append(v.Caches, p.cacheView(c.status, p.hist[c.src], now))
	}
	for _, b := range buses {
		st := b.bus.Stats()
		if p.hist[b.bus] == nil {
			p.sampleBusLocked(b.bus, now)
		}
		v.Buses = append(v.Buses, p.busView(b, st, p.hist[b.bus], now))
	}
	return v
}

func (p *Page) cacheView(st tiered.Status, h *history, now time.Time) CacheView {
	cv := CacheView{
		Name:          st.Name,
		Flights:       st.Flights,
		LoadsInFlight: st.LoadsInFlight,
		Refreshing:    st.Refreshing,
		Breakers:      []BreakerView{},
		Totals:        st.Stats,
		L1: L1View{Present: st.L1.Present, Sized: st.L1.Sized, Entries: st.L1.Entries, Cost: st.L1.Cost,
			Dropped: st.L1.Dropped, Rejected: st.L1.Rejected},
	}
	// A store bounded by entry count has Entries == Cost; one bounded by
	// cost reports no entries.
	cv.L1.EntriesKnown = st.L1.Sized && (st.L1.Entries > 0 || st.L1.Cost == 0)
	for _, b := range st.Breakers {
		cv.Breakers = append(cv.Breakers, BreakerView{Shard: b.Shard, State: b.State, Openings: b.Openings, Rejected: b.Rejected})
	}
	base, _ := h.base(now, p.cfg.window)
	a, z := base.cache, st.Stats
	w := &cv.Recent
	w.Seconds = now.Sub(base.at).Seconds()
	l1Hits := (z.L1Hits + z.L1NotFound) - (a.L1Hits + a.L1NotFound)
	w.L1 = TierView{Requests: l1Hits + z.L1Misses - a.L1Misses, Hits: l1Hits}
	w.L1.Ratio = ratio(w.L1.Hits, w.L1.Requests)
	l2Hits := (z.L2Hits + z.L2NotFound) - (a.L2Hits + a.L2NotFound)
	w.L2Errors = z.L2Errors - a.L2Errors
	w.L2 = TierView{Requests: l2Hits + z.L2Misses - a.L2Misses + w.L2Errors, Hits: l2Hits}
	w.L2.Ratio = ratio(w.L2.Hits, w.L2.Requests)
	w.Loads, w.LoadNotFound, w.LoadErrors = z.Loads-a.Loads, z.LoadNotFound-a.LoadNotFound, z.LoadErrors-a.LoadErrors
	w.LeaseWaits = z.LeaseWaits - a.LeaseWaits
	if w.LeaseWaits > 0 {
		w.LeaseWaitAvg = (z.LeaseWaitTime - a.LeaseWaitTime).Seconds() / float64(w.LeaseWaits)
	}
	return cv
}

func (p *Page) busView(b namedBus, z invalidation.Stats, h *history, now time.Time) BusView {
	bv := BusView{Name: b.name, Healthy: true, Totals: z, Channels: []ChannelView{}, Flushes: append([]FlushEvent{}, h.flushes...)}
	if s, ok := b.bus.(busStatuser); ok {
		st := s.Status()
		bv.Origin, bv.Sharded, bv.Healthy = originHex(st.Origin), st.Sharded, st.Healthy
		bv.Detection, bv.OwnLag = st.DetectionTime.Seconds(), st.OwnLag.Seconds()
		for _, c := range st.Channels {
			cv := ChannelView{Name: c.Name, Subscribed: c.Subscribed, Healthy: c.Healthy, SinceHeard: c.SinceHeard.Seconds(),
				LastLag: c.LastLag.Seconds(), Origins: []OriginView{}}
			for _, o := range c.Origins {
				cv.Origins = append(cv.Origins, OriginView{Origin: originHex(o.Origin), Seq: o.Seq, SinceHeard: o.SinceHeard.Seconds(), Silent: o.Silent})
			}
			bv.Healthy = bv.Healthy && c.Healthy && c.Subscribed
			bv.Channels = append(bv.Channels, cv)
		}
	}
	// Flushes since the last sample, not yet recorded.
	if n := len(h.samples); n > 0 {
		last := h.samples[n-1]
		for _, r := range flushReasons {
			if d := r.count(z.Flushes) - r.count(last.bus.Flushes); d > 0 {
				bv.Flushes = append(bv.Flushes, FlushEvent{Reason: r.name, Count: d, After: last.at, Before: now})
			}
		}
	}
	base, _ := h.base(now, p.cfg.window)
	a := base.bus
	w := &bv.Recent
	w.Seconds = now.Sub(base.at).Seconds()
	w.MessagesSent = z.MessagesSent - a.MessagesSent
	w.MessagesReceived = z.MessagesReceived - a.MessagesReceived
	w.KeysInvalidated = z.KeysInvalidated - a.KeysInvalidated
	w.Gaps = z.Gaps - a.Gaps
	w.PublishErrors = z.PublishErrors - a.PublishErrors
	for _, r := range flushReasons {
		w.Flushes += r.count(z.Flushes) - r.count(a.Flushes)
	}
	var lag invalidation.LagHistogram
	for i := range lag.Counts {
		lag.Counts[i] = z.Lag.Counts[i] - a.Lag.Counts[i]
	}
	w.LagSamples = lag.Total()
	w.LagP50, w.LagP99 = lag.Quantile(0.5).Seconds(), lag.Quantile(0.99).Seconds()
	return bv
}
