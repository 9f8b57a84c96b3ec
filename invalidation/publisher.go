package invalidation

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxBatchKeys bounds how many keys one round of a publisher takes from its
// queue; they go out as one pipeline of at most a few messages.
const maxBatchKeys = 4 * MaxKeysPerMessage

// request is one Publish or PublishFlush call's share of one channel.
type request struct {
	kind      msgKind
	namespace string
	keys      []string
	msgs      []int      // indexes of the messages of its batch carrying it
	done      chan error // buffered: the publisher never blocks on it
}

// publisher owns one channel's sending side: its queue, its sequence
// number, its heartbeat. Messages of the channel are numbered and sent
// under sending, one round trip at a time, so they reach Redis in the
// order of their numbers; the announcer only reads seq.
type publisher struct {
	bus     *Bus
	index   int
	channel string
	queue   chan *request
	seq     atomic.Uint64

	// sending is held while messages of the channel are numbered and on
	// their way: by the publisher goroutine, or by a caller sending its
	// own request inline (see tryInline).
	sending sync.Mutex
	// lastSent is the bus clock's time (Unix nanoseconds) of the last
	// round trip that carried messages.
	lastSent atomic.Int64
	// armed is true while the heartbeat timer runs or a kick asking run
	// to start it is pending.
	armed atomic.Bool
	kick  chan struct{} // capacity 1: a sender outside run asks for the heartbeat timer
}

func newPublisher(b *Bus, index int, channel string) *publisher {
	return &publisher{bus: b, index: index, channel: channel, queue: make(chan *request, b.cfg.queueSize),
		kick: make(chan struct{}, 1)}
}

// enqueue hands r to the publisher goroutine.
func (p *publisher) enqueue(ctx context.Context, r *request) error {
	r.done = make(chan error, 1)
	select {
	case p.queue <- r:
		return nil
	case <-p.bus.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("invalidation: publish: %w", ctx.Err())
	}
}

// wait returns the outcome of r.
func (p *publisher) wait(ctx context.Context, r *request) error {
	select {
	case err := <-r.done:
		return err
	case <-p.bus.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("invalidation: publish: %w", ctx.Err())
	}
}

// submit publishes r and waits for the outcome: inline when the channel is
// idle, through the publisher goroutine otherwise.
func (p *publisher) submit(ctx context.Context, r *request) error {
	if ok, err := p.tryInline(ctx, r); ok {
		return err
	}
	if err := p.enqueue(ctx, r); err != nil {
		return err
	}
	return p.wait(ctx, r)
}

// tryInline sends r on the caller's goroutine, in one round trip, when
// nothing is queued on the channel and no round trip is in flight; it
// reports false (and sends nothing) otherwise. A lone write so skips two
// goroutine hand-offs; writes that arrive while a round trip is in flight
// still queue and go out together in the next one.
func (p *publisher) tryInline(ctx context.Context, r *request) (bool, error) {
	if len(p.queue) > 0 || !p.sending.TryLock() {
		return false, nil
	}
	if p.bus.isClosed() {
		p.sending.Unlock()
		return true, ErrClosed
	}
	if err := ctx.Err(); err != nil { // before a sequence number is taken
		p.sending.Unlock()
		return true, fmt.Errorf("invalidation: publish: %w", err)
	}
	r.done = make(chan error, 1)
	p.send(ctx, []*request{r})
	p.sent()
	return true, <-r.done
}

// sent ends a round trip that carried messages: it records its time,
// releases sending and makes sure a heartbeat follows (see run).
func (p *publisher) sent() {
	p.lastSent.Store(p.bus.clock.Now().UnixNano())
	p.sending.Unlock()
	if p.armed.CompareAndSwap(false, true) {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// run is the publisher goroutine. It sends what is queued as soon as it is
// free: writes queued while a round trip is in flight go out together in
// the next one. One heartbeat interval after the channel's last message it
// sends one heartbeat carrying the channel's sequence number (so that a
// lost last message is seen by the receivers of this channel even before
// the next announcement); an idle channel costs nothing.
//
// The heartbeat timer is armed by the first message after a heartbeat
// (armed goes from false to true, by whoever sent it) and, when it fires
// before an interval has passed since the last message, re-armed for the
// rest. armed is cleared before the heartbeat takes sending, so a message
// sent after the heartbeat's number was read arms the timer again.
func (p *publisher) run(ctx context.Context) {
	defer p.bus.wg.Done()
	defer p.bus.pubWG.Done()
	interval := p.bus.cfg.heartbeat
	hb := p.bus.clock.NewTimer(interval)
	hb.Stop()
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			p.stop(ctx)
			return
		case r := <-p.queue:
			p.sending.Lock()
			p.send(ctx, p.collect(r))
			p.sent()
		case <-p.kick:
			hb.Reset(interval)
		case <-hb.C():
			now := p.bus.clock.Now().UnixNano()
			if rest := interval - time.Duration(now-p.lastSent.Load()); rest > 0 {
				hb.Reset(rest)
				continue
			}
			p.armed.Store(false)
			p.sending.Lock()
			p.heartbeat(ctx, false)
			p.sending.Unlock()
		}
	}
}

// collect takes first and whatever else is queued, up to maxBatchKeys.
func (p *publisher) collect(first *request) []*request {
	batch := []*request{first}
	n := len(first.keys)
	for n < maxBatchKeys {
		select {
		case r := <-p.queue:
			batch = append(batch, r)
			n += len(r.keys)
		default:
			return batch
		}
	}
	return batch
}

// outgoing is one message of a batch.
type outgoing struct {
	msg     message
	size    int // encoded size
	dropped bool
	err     error
}

// pack builds the messages of a batch: the keys of each namespace packed
// into as few messages as the limits allow, and one message per flush.
func pack(batch []*request) []*outgoing {
	if len(batch) == 1 && batch[0].kind == kindKeys && len(batch[0].keys) == 1 {
		// A lone write: one message with one key.
		r := batch[0]
		if size := encodedSize(r.namespace, r.keys); size <= MaxMessageSize {
			r.msgs = append(r.msgs[:0], 0)
			return []*outgoing{{msg: message{Kind: kindKeys, Namespace: r.namespace, Keys: r.keys}, size: size}}
		}
	}
	var msgs []*outgoing
	open := make(map[string]int) // namespace → index of its last keys message
	for _, r := range batch {
		r.msgs = r.msgs[:0]
		if r.kind == kindFlush {
			msgs = append(msgs, &outgoing{
				msg:  message{Kind: kindFlush, Namespace: r.namespace},
				size: encodedSize(r.namespace, nil),
			})
			r.msgs = append(r.msgs, len(msgs)-1)
			continue
		}
		for _, k := range r.keys {
			i, ok := open[r.namespace]
			if ok {
				m := msgs[i]
				if len(m.msg.Keys) >= MaxKeysPerMessage || m.size+keySize(k) > MaxMessageSize {
					ok = false
				}
			}
			if !ok {
				msgs = append(msgs, &outgoing{
					msg:  message{Kind: kindKeys, Namespace: r.namespace},
					size: encodedSize(r.namespace, nil) + 2, // room for a 3-byte key count
				})
				i = len(msgs) - 1
				open[r.namespace] = i
			}
			m := msgs[i]
			m.msg.Keys = append(m.msg.Keys, k)
			m.size += keySize(k)
			if len(r.msgs) == 0 || r.msgs[len(r.msgs)-1] != i {
				r.msgs = append(r.msgs, i)
			}
		}
	}
	return msgs
}

// send publishes one batch and tells each request how it went.
func (p *publisher) send(ctx context.Context, batch []*request) {
	p.sendVia(ctx, batch, p.publish)
}

// sendVia is send with the round trip made by publish, which gets the
// encoded messages in order and returns one error per message.
func (p *publisher) sendVia(ctx context.Context, batch []*request, publish func(context.Context, [][]byte) []error) {
	msgs := pack(batch)
	payloads := make([][]byte, 0, len(msgs))
	now := p.bus.clock.Now().UnixNano()
	for _, m := range msgs {
		m.msg.Origin, m.msg.Seq, m.msg.PublishedAt = p.bus.origin, p.seq.Add(1), now
		if p.bus.dropped(true, &m.msg) {
			m.dropped = true
			continue
		}
		payloads = append(payloads, appendMessage(make([]byte, 0, m.size), &m.msg))
	}
	errs := publish(ctx, payloads)
	j := 0
	for _, m := range msgs {
		if m.dropped {
			continue
		}
		m.err = errs[j]
		j++
		if m.err != nil {
			p.bus.stats.publishErrors.Add(1)
			continue
		}
		if m.msg.Kind == kindFlush {
			p.bus.stats.flushMsgsSent.Add(1)
			continue
		}
		p.bus.stats.keysMsgsSent.Add(1)
		p.bus.stats.keysSent.Add(uint64(len(m.msg.Keys)))
	}
	for _, r := range batch {
		var err error
		for _, i := range r.msgs {
			if err = msgs[i].err; err != nil {
				break
			}
		}
		r.done <- err
	}
}

// heartbeat sends the current sequence number.
func (p *publisher) heartbeat(ctx context.Context, leaving bool) {
	m := message{Origin: p.bus.origin, Seq: p.seq.Load(), Kind: kindHeartbeat, Leaving: leaving, PublishedAt: p.bus.clock.Now().UnixNano()}
	if p.bus.dropped(true, &m) {
		return
	}
	if err := p.publish(ctx, [][]byte{appendMessage(nil, &m)})[0]; err != nil {
		p.bus.stats.publishErrors.Add(1)
		p.bus.log.Warn("invalidation: heartbeat failed", "channel", p.channel, "error", err)
		return
	}
	p.bus.stats.heartbeatsSent.Add(1)
}

// stop fails what is still queued and says goodbye: a heartbeat marked
// leaving, sent by the bus's leave deadline (see Bus.Close). It does not
// wait for a caller's round trip holding the channel (a carried or inline
// publish): the heartbeat is then skipped, as it is when the deadline has
// passed; the bus's leaving announcement carries the channel's sequence
// number too.
func (p *publisher) stop(ctx context.Context) {
	for {
		select {
		case r := <-p.queue:
			r.done <- ErrClosed
		default:
			if p.seq.Load() == 0 {
				return
			}
			lctx, cancel := p.bus.leaveContext(ctx)
			defer cancel()
			if lctx.Err() != nil || !p.sending.TryLock() {
				return
			}
			p.heartbeat(lctx, true)
			p.sending.Unlock()
			return
		}
	}
}

// publish sends payloads in order in one round trip and returns one error
// per payload.
func (p *publisher) publish(ctx context.Context, payloads [][]byte) []error {
	errs := make([]error, len(payloads))
	if len(payloads) == 0 {
		return errs
	}
	ctx, cancel := context.WithTimeout(ctx, p.bus.cfg.publishTimeout)
	defer cancel()
	if len(payloads) == 1 {
		if err := p.bus.publishCmd(ctx, p.bus.client, p.channel, payloads[0]).Err(); err != nil {
			errs[0] = p.wrap(err)
		}
		return errs
	}
	pipe := p.bus.client.Pipeline()
	cmds := make([]interface{ Err() error }, len(payloads))
	for i, pl := range payloads {
		cmds[i] = p.bus.publishCmd(ctx, pipe, p.channel, pl)
	}
	_, _ = pipe.Exec(ctx) // per-command errors below
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			errs[i] = p.wrap(err)
		}
	}
	return errs
}

func (p *publisher) wrap(err error) error {
	return fmt.Errorf("%w on %s: %w", ErrPublish, p.channel, err)
}
