package invalidation

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a bus's counters, all counted since New.
type Stats struct {
	// MessagesSent counts keys and flush messages Redis accepted.
	MessagesSent uint64
	// HeartbeatsSent counts heartbeats Redis accepted.
	HeartbeatsSent uint64
	// KeysSent counts keys in the messages Redis accepted.
	KeysSent uint64
	// PublishErrors counts messages and heartbeats Redis did not accept.
	PublishErrors uint64
	// AnnouncementsSent counts announcements Redis accepted.
	AnnouncementsSent uint64
	// AnnouncementsReceived counts announcements received from other buses.
	AnnouncementsReceived uint64
	// Unhealthy counts the times the bus became unhealthy: its own
	// announcements stopped coming back in time, or a subscription was
	// lost.
	Unhealthy uint64
	// Dropped counts messages discarded by the test hook (internal).
	Dropped uint64
	// MessagesReceived counts keys and flush messages received from other
	// buses.
	MessagesReceived uint64
	// HeartbeatsReceived counts heartbeats received from other buses.
	HeartbeatsReceived uint64
	// KeysInvalidated counts keys received from other buses in messages of a
	// namespace with at least one subscriber.
	KeysInvalidated uint64
	// Gaps counts sequence gaps: messages lost on their way from another
	// bus, seen in the sequence numbers of a channel or announced and not
	// arrived within the lag limit.
	Gaps uint64
	// Resubscribes counts subscriptions renewed after the first one (after a
	// reconnect, a slot migration or a silence), and first subscriptions
	// completed only after New returned.
	Resubscribes uint64
	// DecodeErrors counts received payloads the decoder rejected.
	DecodeErrors uint64
	// Flushes counts requests to flush every subscribed cache, by reason.
	// Requests made while a flush runs share the next flush.
	Flushes FlushStats
	// Lag is the histogram of publish-to-evict lag: from the sender building
	// a keys message to the invalidate callbacks having returned here.
	Lag LagHistogram
}

// FlushStats counts flushes by reason.
type FlushStats struct {
	// Gap: a sequence gap showed that messages were lost.
	Gap uint64
	// Resubscribe: the subscription of a channel was renewed; messages sent
	// meanwhile are lost.
	Resubscribe uint64
	// Silence: a bus that had been heard fell silent (only the namespaces
	// it announced are flushed).
	Silence uint64
	// Unhealthy: the bus itself was unhealthy (at the start, every D/2
	// while it lasted, and at the end).
	Unhealthy uint64
	// Undecodable: a message on the bus's channels could not be decoded.
	Undecodable uint64
	// Remote: another bus published a flush of a namespace (counted once per
	// message, whatever the number of subscribers of that namespace).
	Remote uint64
}

// lagBounds are the upper bounds of the buckets of LagHistogram; the last
// bucket holds larger lags.
var lagBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
}

// LagHistogram is a histogram with fixed buckets: Counts[i] counts lags in
// (Bounds()[i-1], Bounds()[i]], and the last bucket lags over the last bound
// (5 s). The bounds go 50 µs, 100 µs, 200 µs, 500 µs, 1 ms, 2 ms, 5 ms and
// so on. A negative lag (clock skew between hosts) counts as zero.
type LagHistogram struct {
	Counts [len(lagBounds) + 1]uint64
}

// Bounds returns the upper bounds of the buckets but the last.
func (LagHistogram) Bounds() []time.Duration { b := lagBounds; return b[:] }

// Total returns the number of samples.
func (h LagHistogram) Total() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket holding quantile q (0 to 1)
// of the samples, a pessimistic estimate; for the last bucket it returns
// the last bound. It returns 0 without samples.
func (h LagHistogram) Quantile(q float64) time.Duration {
	total := h.Total()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return lagBounds[min(i, len(lagBounds)-1)]
		}
	}
	return lagBounds[len(lagBounds)-1]
}

// counters holds the live counters behind Stats.
type counters struct {
	// Messages by kind; flushRemote counts the flush messages received.
	keysMsgsSent, flushMsgsSent, heartbeatsSent           atomic.Uint64
	keysMsgsReceived, heartbeatsReceived                  atomic.Uint64
	keysSent, publishErrors, dropped                      atomic.Uint64
	keysInvalidated, gaps, resubscribes, decodeErrors     atomic.Uint64
	flushGap, flushResubscribe, flushSilence, flushRemote atomic.Uint64
	flushUnhealthy, flushUndecodable, unhealthy           atomic.Uint64
	announcementsSent, announcementsReceived              atomic.Uint64
	lag                                                   [len(lagBounds) + 1]atomic.Uint64
}

func (c *counters) observeLag(d time.Duration) {
	i := 0
	for i < len(lagBounds) && d > lagBounds[i] {
		i++
	}
	c.lag[i].Add(1)
}

func (c *counters) snapshot() Stats {
	s := Stats{
		MessagesSent:          c.keysMsgsSent.Load() + c.flushMsgsSent.Load(),
		HeartbeatsSent:        c.heartbeatsSent.Load(),
		KeysSent:              c.keysSent.Load(),
		PublishErrors:         c.publishErrors.Load(),
		Dropped:               c.dropped.Load(),
		AnnouncementsSent:     c.announcementsSent.Load(),
		AnnouncementsReceived: c.announcementsReceived.Load(),
		Unhealthy:             c.unhealthy.Load(),
		MessagesReceived:      c.keysMsgsReceived.Load() + c.flushRemote.Load(),
		HeartbeatsReceived:    c.heartbeatsReceived.Load(),
		KeysInvalidated:       c.keysInvalidated.Load(),
		Gaps:                  c.gaps.Load(),
		Resubscribes:          c.resubscribes.Load(),
		DecodeErrors:          c.decodeErrors.Load(),
		Flushes: FlushStats{
			Gap:         c.flushGap.Load(),
			Resubscribe: c.flushResubscribe.Load(),
			Silence:     c.flushSilence.Load(),
			Remote:      c.flushRemote.Load(),
			Unhealthy:   c.flushUnhealthy.Load(),
			Undecodable: c.flushUndecodable.Load(),
		},
	}
	for i := range c.lag {
		s.Lag.Counts[i] = c.lag[i].Load()
	}
	return s
}
