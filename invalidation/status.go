package invalidation

import (
	"slices"
	"time"
)

// Status is a snapshot of a bus's live state beside its counters (Stats):
// what a status page (package debugpage) shows. Take it with Bus.Status.
type Status struct {
	// Origin is this bus's random id (see Bus.Origin).
	Origin uint64
	// Sharded reports sharded pub/sub (SPUBLISH/SSUBSCRIBE).
	Sharded bool
	// HeartbeatInterval is the configured interval.
	HeartbeatInterval time.Duration
	// Silence is how long another bus may stay unheard before the bus
	// flushes for it.
	Silence time.Duration
	// DetectionTime is D, the loss-detection time (see Bus.DetectionTime).
	DetectionTime time.Duration
	// Healthy reports that the bus's own announcements come back in time
	// and every subscription works (see the package documentation).
	Healthy bool
	// OwnLag is the lag of the newest own announcement that came back.
	OwnLag time.Duration
	// Channels has one entry per channel, in shard order.
	Channels []ChannelStatus
}

// ChannelStatus is the state of one channel of a bus.
type ChannelStatus struct {
	// Name is the channel's name.
	Name string
	// Subscribed reports that a subscription is open (go-redis may still be
	// reconnecting it).
	Subscribed bool
	// Healthy reports that the channel's subscription is confirmed and the
	// bus is healthy.
	Healthy bool
	// SinceHeard is the time since the channel was last heard.
	SinceHeard time.Duration
	// LastLag is the publish-to-evict lag of the last keys message received
	// on the channel; zero before the first.
	LastLag time.Duration
	// Origins are the other buses heard on the channel, by origin id.
	Origins []OriginStatus
}

// OriginStatus is what a channel knows of another bus.
type OriginStatus struct {
	// Origin is the other bus's id.
	Origin uint64
	// Seq is the last sequence number heard from it on the channel.
	Seq uint64
	// SinceHeard is the time since it was last heard on the channel.
	SinceHeard time.Duration
	// Silent reports that it fell silent (no announcement) and the bus
	// flushed for it.
	Silent bool
}

// Status returns a snapshot of the bus's live state. It is safe to call at
// any time, also after Close, and never waits on Redis.
func (b *Bus) Status() Status {
	now := b.since()
	st := Status{
		Origin:            b.origin,
		Sharded:           b.sharded,
		HeartbeatInterval: b.cfg.heartbeat,
		Silence:           b.silence(),
		DetectionTime:     b.DetectionTime(),
		Healthy:           b.healthy.Load(),
		OwnLag:            time.Duration(b.proofLag.Load()),
	}
	silent := map[uint64]bool{}
	b.originsMu.Lock()
	for id, o := range b.origins {
		silent[id] = o.silent
	}
	b.originsMu.Unlock()
	for _, s := range b.subs {
		heard := now - time.Duration(s.lastHeard.Load())
		cs := ChannelStatus{Name: s.channel, SinceHeard: heard, LastLag: time.Duration(s.lastLag.Load()), Healthy: st.Healthy && !s.down.Load()}
		s.mu.Lock()
		cs.Subscribed = s.ps != nil
		for o, p := range s.peers {
			cs.Origins = append(cs.Origins, OriginStatus{Origin: o, Seq: p.seq, SinceHeard: now - p.heard, Silent: silent[o]})
		}
		s.mu.Unlock()
		slices.SortFunc(cs.Origins, func(a, b OriginStatus) int {
			switch {
			case a.Origin < b.Origin:
				return -1
			case a.Origin > b.Origin:
				return 1
			}
			return 0
		})
		st.Channels = append(st.Channels, cs)
	}
	return st
}
