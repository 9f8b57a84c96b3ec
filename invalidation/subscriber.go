package invalidation

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriber owns one channel's receiving side: one subscription connection
// (a *redis.PubSub, which go-redis pins to the node owning the channel's slot
// on a Cluster), the sequence numbers of the other buses on the channel,
// and the loss detection of the channel.
type subscriber struct {
	bus     *Bus
	index   int
	channel string

	ready     chan struct{} // closed on the first subscription confirmation
	readyOnce sync.Once
	confirmed bool // a confirmation was seen; run goroutine only

	lastHeard atomic.Int64 // bus.since() of the last message or confirmation

	mu    sync.Mutex
	ps    *redis.PubSub    // current subscription; nil between two
	peers map[uint64]*peer // by origin
}

// peer is what a subscriber knows of another bus on its channel.
type peer struct {
	seq   uint64        // last sequence number seen
	heard time.Duration // bus.since() of the last message
	// silent is set when the peer fell silent and the bus flushed for it.
	// The peer is kept (for forgetAfter silence periods) so that a gap
	// across the silence is still seen when it speaks again.
	silent bool
}

// forgetAfter is how many silence periods a silent peer is remembered.
const forgetAfter = 100

// errUnsubscribed reports that the server ended the subscription: Redis 7
// sends sunsubscribe when the slot of a shard channel moves to another
// node.
var errUnsubscribed = errors.New("invalidation: unsubscribed by the server")

// errKicked reports that the subscription was closed by the watchdog or by
// Close.
var errKicked = errors.New("invalidation: subscription closed")

func newSubscriber(b *Bus, index int, channel string) *subscriber {
	return &subscriber{bus: b, index: index, channel: channel, ready: make(chan struct{}), peers: make(map[uint64]*peer)}
}

// run is the subscriber goroutine: it subscribes, receives until the
// subscription must be replaced, and subscribes again, until ctx ends.
func (s *subscriber) run(ctx context.Context) {
	defer s.bus.wg.Done()
	bo := backoff{max: min(time.Second, s.bus.cfg.heartbeat)}
	for {
		ps := s.open(ctx)
		if ps == nil {
			return
		}
		err := s.receive(ctx, ps, &bo)
		s.mu.Lock()
		s.ps = nil
		s.mu.Unlock()
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		if bo.next == 0 {
			s.bus.logWarn("invalidation: subscription lost; subscribing again", "channel", s.channel, "error", err)
		} else {
			s.bus.logDebug("invalidation: subscribing again", "channel", s.channel, "error", err)
		}
		if s.bus.reload != nil {
			s.bus.reload(ctx)
		}
		if !bo.wait(ctx) {
			return
		}
	}
}

// open starts a subscription and publishes it in s.ps for kick. It returns
// nil when ctx has ended.
func (s *subscriber) open(ctx context.Context) *redis.PubSub {
	var ps *redis.PubSub
	if s.bus.sharded {
		ps = s.bus.client.SSubscribe(ctx, s.channel)
	} else {
		ps = s.bus.client.Subscribe(ctx, s.channel)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		_ = ps.Close()
		return nil
	}
	s.ps = ps
	return ps
}

// kick closes the current subscription, which makes receive return, so that
// run subscribes again (or stops, once its context has ended).
func (s *subscriber) kick() {
	s.mu.Lock()
	ps := s.ps
	s.mu.Unlock()
	if ps != nil {
		// Outside s.mu: Close waits while go-redis dials inside Receive.
		_ = ps.Close()
	}
}

// receive handles what arrives on ps until ps has to be replaced. go-redis
// reconnects a PubSub by itself after a network error (and subscribes
// again, which shows as a new confirmation); receive returns on what it
// cannot repair: an error reply (MOVED after a slot migration), an
// unsubscription by the server, or a closed PubSub.
func (s *subscriber) receive(ctx context.Context, ps *redis.PubSub, bo *backoff) error {
	for {
		v, err := ps.Receive(ctx)
		if err != nil {
			switch {
			case ctx.Err() != nil || errors.Is(err, redis.ErrClosed):
				return errKicked
			case isRedisError(err):
				return err
			}
			// A network error: go-redis has reconnected, or will on the
			// next Receive. Pace the retries while Redis is unreachable.
			s.bus.logDebug("invalidation: receive failed", "channel", s.channel, "error", err)
			if s.bus.reload != nil {
				s.bus.reload(ctx)
			}
			if !bo.wait(ctx) {
				return errKicked
			}
			continue
		}
		switch v := v.(type) {
		case *redis.Subscription:
			switch v.Kind {
			case "subscribe", "ssubscribe":
				bo.reset()
				s.confirm()
			case "unsubscribe", "sunsubscribe":
				return errUnsubscribed
			}
		case *redis.Message:
			s.handle(v.Payload)
		}
	}
}

// confirm handles a subscription confirmation. Anything sent on the channel
// before it may have been missed, so unless this is the bus's first
// subscription (nothing can be cached yet), it flushes; and it forgets the
// sequence numbers, which start again from the next message of each bus.
func (s *subscriber) confirm() {
	s.lastHeard.Store(int64(s.bus.since()))
	s.mu.Lock()
	clear(s.peers)
	s.mu.Unlock()
	if s.confirmed || s.bus.started.Load() {
		s.bus.stats.resubscribes.Add(1)
		s.bus.logWarn("invalidation: channel subscribed again; flushing", "channel", s.channel)
		s.bus.flushAll(reasonResubscribe)
	}
	s.confirmed = true
	s.readyOnce.Do(func() { close(s.ready) })
}

// handle applies one received payload.
func (s *subscriber) handle(payload string) {
	b := s.bus
	m, err := decodeMessage(payload)
	if err == nil && b.cfg.drop != nil && b.cfg.drop(Incoming, &m) {
		b.stats.dropped.Add(1)
		return // as if it never arrived
	}
	s.lastHeard.Store(int64(b.since()))
	if err != nil {
		b.stats.decodeErrors.Add(1)
		b.logWarn("invalidation: dropping undecodable message", "channel", s.channel, "error", err)
		return
	}
	if m.Origin == b.origin {
		return // our own message: it proves the channel works, nothing more
	}
	gap, heardAgain := s.track(&m)
	if heardAgain {
		b.peerSeen(m.Origin)
	}
	if gap {
		b.stats.gaps.Add(1)
		b.logWarn("invalidation: messages lost; flushing", "channel", s.channel, "origin", m.Origin)
		b.flushAll(reasonGap)
	}
	switch m.Kind {
	case KindKeys:
		b.stats.keysMsgsReceived.Add(1)
		if b.invalidate(m.Namespace, m.Keys) {
			b.stats.keysInvalidated.Add(uint64(len(m.Keys)))
			lag := time.Duration(max(time.Now().UnixNano()-m.PublishedAt, 0))
			b.stats.observeLag(lag)
			b.tel.recordLag(lag)
		}
	case KindFlush:
		b.stats.flushRemote.Add(1)
		b.flushNamespace(m.Namespace)
	case KindHeartbeat:
		b.stats.heartbeatsReceived.Add(1)
	}
}

// track checks m's sequence number against what this channel saw from its
// origin. It reports a gap (messages lost in between) and whether the
// origin is new here or back from silence. A keys or flush message must
// carry the next number; a heartbeat repeats the number of the last one, so
// a heartbeat ahead of what was seen means the last messages were lost.
func (s *subscriber) track(m *Message) (gap, heardAgain bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[m.Origin]
	switch {
	case p == nil && m.Leaving:
		return false, false
	case p == nil:
		// The first message of this origin since we subscribed: it sets the
		// baseline. What the origin sent before cannot have been missed by
		// this subscription.
		s.peers[m.Origin] = &peer{seq: m.Seq, heard: s.bus.since()}
		return false, true
	}
	heardAgain = p.silent
	p.silent = false
	p.heard = s.bus.since()
	if m.Kind == KindHeartbeat {
		gap = m.Seq > p.seq
	} else {
		gap = m.Seq > p.seq+1
	}
	p.seq = max(p.seq, m.Seq)
	if m.Leaving {
		delete(s.peers, m.Origin)
	}
	return gap, heardAgain
}

// check is called by the watchdog. A channel silent for the silence time
// (not even our own heartbeats came back) has lost its subscription without
// go-redis noticing: flush and subscribe again. An origin silent that long
// has died or lost Redis, and what it published last may be lost: flush
// (once per origin, whatever the number of channels) and mark it silent; it
// is forgotten after forgetAfter silence periods.
func (s *subscriber) check(now time.Duration) {
	b := s.bus
	silence := b.silence()
	if now-time.Duration(s.lastHeard.Load()) > silence {
		// Start a new window: while the silence lasts, flush once per window.
		s.lastHeard.Store(int64(now))
		s.mu.Lock()
		clear(s.peers)
		s.mu.Unlock()
		b.logWarn("invalidation: channel silent; flushing and subscribing again", "channel", s.channel, "silence", silence)
		b.flushAll(reasonSilence)
		s.kick()
		return
	}
	var lost []uint64
	s.mu.Lock()
	for o, p := range s.peers {
		switch idle := now - p.heard; {
		case p.silent && idle > forgetAfter*silence:
			delete(s.peers, o)
		case !p.silent && idle > silence:
			p.silent = true
			lost = append(lost, o)
		}
	}
	s.mu.Unlock()
	for _, o := range lost {
		b.peerLost(o)
	}
}

// backoff paces retries: 10 ms doubling up to max.
type backoff struct {
	max  time.Duration
	next time.Duration
}

func (bo *backoff) reset() { bo.next = 0 }

// wait sleeps for the next delay or until ctx ends; it reports whether ctx
// is still alive.
func (bo *backoff) wait(ctx context.Context) bool {
	bo.next = min(max(2*bo.next, 10*time.Millisecond), bo.max)
	t := time.NewTimer(bo.next)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
