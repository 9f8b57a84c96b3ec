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
// and what their announcements say should arrive. Subscriber 0 also carries
// the announcement channel, which shares its slot.
type subscriber struct {
	bus     *Bus
	index   int
	channel string

	ready     chan struct{} // closed on the first subscription confirmation
	readyOnce sync.Once
	confirmed bool // a confirmation was seen; run goroutine only

	lastHeard    atomic.Int64 // bus.since() of the last message or confirmation
	down         atomic.Bool  // no working subscription: between a loss and the next confirmation
	lastLag      atomic.Int64 // publish-to-evict lag of the last keys message (Status)
	resetPending atomic.Bool  // a reset is queued for the resetter

	mu    sync.Mutex
	ps    *redis.PubSub    // current subscription; nil between two
	peers map[uint64]*peer // by origin
}

// peer is what a subscriber knows of another bus on its channel.
type peer struct {
	seq    uint64        // last sequence number seen (or announced at first contact)
	heard  time.Duration // bus.since() of its last message here
	expect []expectation // announced numbers not seen yet, rising
}

// expectation is a sequence number an announcement promised, and by when it
// must have arrived.
type expectation struct {
	seq uint64
	by  time.Duration
}

// errUnsubscribed reports that the server ended the subscription: Redis 7
// sends sunsubscribe when the slot of a shard channel moves to another
// node.
var errUnsubscribed = errors.New("invalidation: unsubscribed by the server")

// errKicked reports that the subscription was closed by the watchdog or by
// Close.
var errKicked = errors.New("invalidation: subscription closed")

func newSubscriber(b *Bus, index int, channel string) *subscriber {
	s := &subscriber{bus: b, index: index, channel: channel, ready: make(chan struct{}), peers: make(map[uint64]*peer)}
	s.down.Store(true)
	return s
}

// run is the subscriber goroutine: it subscribes, receives until the
// subscription must be replaced, and subscribes again, until ctx ends.
func (s *subscriber) run(ctx context.Context) {
	defer s.bus.wg.Done()
	bo := backoff{max: min(time.Second, s.bus.cfg.heartbeat)}
	for {
		ps, err := s.open(ctx)
		if ps == nil && err == nil {
			return
		}
		if ps != nil {
			err = s.receive(ps, &bo)
			s.down.Store(true)
			s.mu.Lock()
			s.ps = nil
			s.mu.Unlock()
			// Nothing holds the PubSub's lock for long (see receive):
			// this closes the connection at once, before run returns.
			_ = ps.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if bo.next == 0 {
			s.bus.log.Warn("invalidation: subscription lost; subscribing again", "channel", s.channel, "error", err)
		} else {
			s.bus.log.Debug("invalidation: subscribing again", "channel", s.channel, "error", err)
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
// a nil PubSub and a nil error when ctx has ended, a nil PubSub and the
// error when the subscription did not get through.
//
// The subscription's connection is dialled, initialised (HELLO, AUTH) and
// sent SUBSCRIBE under a deadline of one publish timeout: go-redis holds the
// PubSub's lock meanwhile, and kick and Close wait for it.
func (s *subscriber) open(ctx context.Context) (*redis.PubSub, error) {
	chans := []string{s.channel}
	if s.index == 0 {
		chans = append(chans, s.bus.announce, s.bus.inbox)
	}
	octx, cancel := context.WithTimeout(ctx, s.bus.cfg.publishTimeout)
	defer cancel()
	var ps *redis.PubSub
	var err error
	if s.bus.sharded {
		ps = s.bus.client.SSubscribe(octx) // no channel yet: no I/O
		err = ps.SSubscribe(octx, chans...)
	} else {
		ps = s.bus.client.Subscribe(octx)
		err = ps.Subscribe(octx, chans...)
	}
	s.mu.Lock()
	if err != nil || ctx.Err() != nil {
		s.mu.Unlock()
		_ = ps.Close()
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	s.ps = ps
	s.mu.Unlock()
	return ps, nil
}

// kick closes the current subscription, which makes receive return, so that
// run subscribes again (or stops, once its context has ended). Only the
// resetter and Close call it.
func (s *subscriber) kick() {
	s.mu.Lock()
	ps := s.ps
	s.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// receive handles what arrives on ps until ps has to be replaced: on any
// error (a network error, an error reply such as MOVED after a slot
// migration, a closed PubSub) and on an unsubscription by the server (Redis
// 7 sends sunsubscribe when the slot of a shard channel moves). run then
// subscribes again, which shows as a new confirmation (and a flush).
//
// It reads with a context that is already cancelled, on purpose: go-redis
// applies a context's deadline to socket reads but not its cancellation,
// so the reads wait as long as they must (a deadline could cut a message in
// half), while the reconnection go-redis itself attempts after a read error,
// holding the PubSub's lock (which kick and Close need), fails at once
// instead of dialling and waiting for a HELLO from a server that may be
// frozen. run reconnects instead, under a deadline (see open).
func (s *subscriber) receive(ps *redis.PubSub, bo *backoff) error {
	for {
		v, err := ps.Receive(recvCtx)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) {
				return errKicked
			}
			return err
		}
		switch v := v.(type) {
		case *redis.Subscription:
			switch v.Kind {
			case "subscribe", "ssubscribe":
				if v.Channel == s.channel {
					bo.reset()
					s.confirm()
				}
			case "unsubscribe", "sunsubscribe":
				return errUnsubscribed
			}
		case *redis.Message:
			switch v.Channel {
			case s.channel:
				s.handle(v.Payload)
			case s.bus.inbox:
				s.bus.handleNotice(v.Payload)
			default:
				s.handleAnnouncement(v.Payload)
			}
		}
	}
}

// recvCtx is the context of the subscribers' reads (see receive).
var recvCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

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
		s.bus.log.Warn("invalidation: channel subscribed again; flushing", "channel", s.channel)
		s.bus.flushAll(reasonResubscribe)
	}
	s.down.Store(false)
	s.confirmed = true
	s.readyOnce.Do(func() { close(s.ready) })
}

// decode decodes payload, applying the test hook. ok is false when the
// message is to be ignored; an undecodable payload is a loss: the bus
// flushes every cache (it cannot know whose keys it carried).
func (s *subscriber) decode(payload string) (m message, ok bool) {
	b := s.bus
	m, err := decodeMessage(payload)
	if err == nil && b.dropped(false, &m) {
		return m, false
	}
	s.lastHeard.Store(int64(b.since()))
	if err != nil {
		b.stats.decodeErrors.Add(1)
		b.log.Warn("invalidation: undecodable message on our channel (another wire version?); flushing", "channel", s.channel, "error", err)
		b.flushAll(reasonUndecodable)
		return m, false
	}
	return m, true
}

func (s *subscriber) handleAnnouncement(payload string) {
	m, ok := s.decode(payload)
	if !ok {
		return
	}
	if m.Kind != kindAnnounce {
		s.bus.stats.decodeErrors.Add(1)
		s.bus.log.Warn("invalidation: a non-announcement on the announcement channel; flushing", "kind", m.Kind)
		s.bus.flushAll(reasonUndecodable)
		return
	}
	s.bus.handleAnnouncement(&m)
}

// handle applies one received payload of the channel.
func (s *subscriber) handle(payload string) {
	b := s.bus
	m, ok := s.decode(payload)
	if !ok || m.Origin == b.origin {
		return // our own message: nothing to do
	}
	if m.Kind == kindAnnounce || m.Kind.notice() {
		b.stats.decodeErrors.Add(1)
		b.log.Warn("invalidation: a message of the wrong channel on a data channel; flushing", "channel", s.channel, "kind", m.Kind)
		b.flushAll(reasonUndecodable)
		return
	}
	if s.track(&m) {
		b.stats.gaps.Add(1)
		b.log.Warn("invalidation: messages lost; flushing", "channel", s.channel, "origin", m.Origin)
		b.flushOrigin(m.Origin, reasonGap, m.Namespace)
	}
	switch m.Kind {
	case kindKeys:
		b.stats.keysMsgsReceived.Add(1)
		if b.invalidate(m.Namespace, m.Keys) {
			b.stats.keysInvalidated.Add(uint64(len(m.Keys)))
			lag := time.Duration(max(b.clock.Now().UnixNano()-m.PublishedAt, 0))
			b.stats.observeLag(lag)
			b.tel.recordLag(lag)
			s.lastLag.Store(int64(lag))
		}
	case kindFlush:
		b.stats.flushRemote.Add(1)
		b.flushNamespaces([]string{m.Namespace})
	case kindHeartbeat:
		b.stats.heartbeatsReceived.Add(1)
	}
}

// track checks m's sequence number against what this channel saw from its
// origin and reports a gap (messages lost in between). A keys or flush
// message must carry the next number; a heartbeat repeats the number of the
// last one, so a heartbeat ahead of what was seen means the last messages
// were lost. The first message of an origin must be its first (number 1, or
// 0 for a heartbeat of an origin that sent nothing yet): a first contact
// further on counts as a gap, since what came before may have been missed.
func (s *subscriber) track(m *message) (gap bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[m.Origin]
	now := s.bus.since()
	if p == nil {
		if m.Leaving {
			return false
		}
		s.peers[m.Origin] = &peer{seq: m.Seq, heard: now}
		if m.Kind == kindHeartbeat {
			return m.Seq > 0
		}
		return m.Seq > 1
	}
	p.heard = now
	if m.Kind == kindHeartbeat {
		gap = m.Seq > p.seq
	} else {
		gap = m.Seq > p.seq+1
	}
	p.seq = max(p.seq, m.Seq)
	p.settle()
	return gap
}

// settle drops the expectations met.
func (p *peer) settle() {
	i := 0
	for i < len(p.expect) && p.expect[i].seq <= p.seq {
		i++
	}
	p.expect = p.expect[i:]
}

// expect records that origin announced sequence number seq on this channel:
// unless it arrived already, it must arrive by deadline. An origin this
// channel never heard from gets seq as its baseline minus what must still
// arrive: nothing, so that every message up to seq must arrive.
func (s *subscriber) expect(origin, seq uint64, deadline time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[origin]
	if p == nil {
		p = &peer{heard: s.bus.since()}
		s.peers[origin] = p
	}
	if seq <= p.seq || (len(p.expect) > 0 && seq <= p.expect[len(p.expect)-1].seq) {
		return
	}
	p.expect = append(p.expect, expectation{seq: seq, by: deadline})
}

// overdue returns the origins with an announced sequence number that did
// not arrive in time, and gives up waiting for it (its messages are taken
// as lost: the caller flushes).
func (s *subscriber) overdue(now time.Duration) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var late []uint64
	for o, p := range s.peers {
		if len(p.expect) > 0 && now > p.expect[0].by {
			late = append(late, o)
			p.seq = max(p.seq, p.expect[len(p.expect)-1].seq)
			p.expect = nil
		}
	}
	return late
}

// forget drops what the channel knows of origin.
func (s *subscriber) forget(origin uint64) {
	s.mu.Lock()
	delete(s.peers, origin)
	s.mu.Unlock()
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
