package invalidation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Lease notices: waking the callers that wait on a load lease (tiered's
// LeaseWaker; DESIGN §6.1, "waiters never starve").
//
// When a cache finds a load lease held by another node, its caller waits
// for the holder's result. Without help it learns of the result by polling
// L2 (1 ms doubling to 8 ms by default), so after the value lands it sleeps
// on for up to a poll interval. With a bus, the holder wakes it:
//
//  1. Every bus has an inbox channel, prefix:{tag0}:in:hhhh, where hhhh is
//     its hint: the top 16 bits of its origin id. The lease tokens its
//     caches take (LeaseToken) carry the hint in their top 16 bits, so
//     whoever reads a lease knows where its holder listens.
//  2. The holder's cache calls HoldLease when it takes a lease: a map entry
//     in this process, no message. An ordinary load, which nobody waits
//     for, costs no traffic at all.
//  3. A waiter calls AwaitLease with the token it read. Its process
//     registers it and sends a "lease wait" notice for (namespace, key) to
//     the inbox the token names, unless this process holds a lease on the
//     key itself (then the wake stays in-process). One notice per waiting
//     node and lease: a cache has one flight per key.
//  4. The holder's bus records the waiting origin on its holding (a bus
//     that holds no lease on the key ignores the notice).
//  5. When the holder's cache has resolved the lease (filled it, left a
//     failure marker, or released it) it calls LeaseResolved. The process
//     wakes its own waiters on the key at once, in-process, and sends one
//     "lease filled" notice to the inbox of each origin that waited. Those
//     buses wake their waiters on the key, which read L2 again.
//
// A stampede of N nodes costs N-1 wait notices and N-1 filled notices,
// each delivered to one bus: O(N), where a notice broadcast on a shared
// channel would cost N deliveries each, O(N²) in all.
//
// The races. A wait notice may reach the holder after it resolved the lease
// (a short load): the holder would not know anyone waits. So each bus
// remembers its last recentResolved resolutions for recentWindow and
// answers a wait notice for one of them with a filled notice at once. A
// wait registered in this process just after a local resolution is woken
// at once the same way. A wait notice may also reach the holder before its
// cache called HoldLease (between winning the lease in Redis and telling
// the bus): a notice addressed to this bus for a key it neither holds nor
// resolved lately is kept for recentWindow (at most maxEarly keys), and a
// HoldLease of the key takes its waiters over.
//
// Why this shape. The holder cannot know of waiters on other nodes without
// a message from them, and a filled notice sent on every load would cost a
// message per ordinary load. Marking waiters in the lease entry in Redis
// instead would change the L2 scripts and entry format for every load.
//
// Notices are hints, never needed for correctness: waiters keep polling L2
// with backoff (a lost or late notice costs latency only), a spurious wake
// costs one L2 read, and notices take no sequence number, so losing one is
// not a gap and flushes nothing. Two buses may share a hint (1 in 65536 per
// pair): each then also gets the other's notices, and ignores those for
// keys it neither holds nor waits on. A lease token not made by LeaseToken
// (another release, a batch lease) sends the wait notice to an inbox nobody
// or the wrong bus reads: the waiter polls. Older releases do not subscribe
// to inboxes and never see a notice; a notice this bus cannot decode is
// counted as a decode error and ignored (nothing can have been lost with
// it). Notices are sent by one goroutine of the bus, which packs what is
// queued into as few messages as it can and sends them in one round trip;
// a full queue drops notices.

const (
	// noticeQueueSize bounds the notices waiting to be sent.
	noticeQueueSize = 1024
	// maxNoticeBatch bounds the notices one round of the sender takes.
	maxNoticeBatch = 256
	// recentResolved is how many lease resolutions a bus remembers, and
	// recentWindow for how long, to answer late wait notices.
	recentResolved = 256
	recentWindow   = time.Second
	// maxEarly bounds the keys with wait notices kept for a HoldLease to
	// come.
	maxEarly = 1024
	// hintShift puts a bus's hint in the top 16 bits of an id or token.
	hintShift = 48
)

// leaseKey names a key of a namespace.
type leaseKey struct{ namespace, key string }

// holding is a lease this process holds on a key: how many (two caches of
// one name may each think they hold one), and the other buses (origins)
// whose waiters announced themselves while it was held.
type holding struct {
	n       int32
	waiters []uint64
}

// leaseWaiter is one AwaitLease registration.
type leaseWaiter struct {
	wake chan struct{} // capacity 1: a pending wake is never lost, never blocks
}

func (w *leaseWaiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// resolution is a lease resolved by this process, and when.
type resolution struct {
	k  leaseKey
	at time.Duration // bus.since()
}

// notice is one notice queued for the sender, to the inbox of hint.
type notice struct {
	kind msgKind
	hint uint16
	k    leaseKey
}

// early is the waiters a wait notice named before the HoldLease of its key.
type early struct {
	origins []uint64
	at      time.Duration // bus.since() of the first notice
}

// notices is the lease-notice state of a bus.
type notices struct {
	mu      sync.Mutex
	held    map[leaseKey]holding
	early   map[leaseKey]early
	waiters map[leaseKey][]*leaseWaiter
	recent  [recentResolved]resolution // ring; next is the oldest
	next    int
	nrecent int // entries of recent in use
	queue   chan notice
}

func (n *notices) init() {
	n.held = make(map[leaseKey]holding)
	n.early = make(map[leaseKey]early)
	n.waiters = make(map[leaseKey][]*leaseWaiter)
	n.queue = make(chan notice, noticeQueueSize)
}

// resolvedLately reports whether this process resolved a lease on k within
// recentWindow before now. Called with mu held.
func (n *notices) resolvedLately(k leaseKey, now time.Duration) bool {
	for i := range n.nrecent {
		if r := &n.recent[i]; r.k == k && now-r.at <= recentWindow {
			return true
		}
	}
	return false
}

// hintOf returns the hint in the top 16 bits of an origin or lease token.
func hintOf(id uint64) uint16 { return uint16(id >> hintShift) }

// inboxName returns the inbox channel of the buses with hint: in the slot
// of channel 0, so that subscriber 0's connection carries it.
func inboxName(channel0 string, hint uint16) string {
	return channel0 + ":in:" + strconv.FormatUint(uint64(hint)|1<<16, 16)[1:]
}

// LeaseToken returns a fresh random lease token that carries this bus's
// hint, so that the waiters on the lease know where to say they wait. It
// is never zero. It implements driver.LeaseWaker.
func (b *Bus) LeaseToken() uint64 {
	return uint64(hintOf(b.origin))<<hintShift | (rand.Uint64N(1<<hintShift-1) + 1)
}

// HoldLease records that a cache of this process took the load lease on key
// of namespace. It sends nothing. It implements driver.LeaseWaker.
func (b *Bus) HoldLease(namespace, key string) {
	k := leaseKey{namespace, key}
	n := &b.notes
	n.mu.Lock()
	h := n.held[k]
	h.n++
	if len(n.early) > 0 {
		if e, ok := n.early[k]; ok {
			delete(n.early, k)
			if b.since()-e.at <= recentWindow {
				h.waiters = append(h.waiters, e.origins...)
			}
		}
	}
	n.held[k] = h
	n.mu.Unlock()
}

// LeaseResolved ends a HoldLease: the cache has replaced its lease on key
// of namespace in L2 (by the value, a marker, or nothing). It wakes the
// waiters of this process on key and queues a "lease filled" notice to
// each bus whose waiters announced themselves. It never waits on the
// network. It implements driver.LeaseWaker.
func (b *Bus) LeaseResolved(namespace, key string) {
	k := leaseKey{namespace, key}
	n := &b.notes
	n.mu.Lock()
	h, held := n.held[k]
	if held {
		if h.n <= 1 {
			delete(n.held, k)
		} else {
			n.held[k] = holding{n: h.n - 1}
		}
	}
	n.recent[n.next] = resolution{k: k, at: b.since()}
	n.next = (n.next + 1) % len(n.recent)
	n.nrecent = min(n.nrecent+1, len(n.recent))
	for _, w := range n.waiters[k] {
		w.signal()
	}
	n.mu.Unlock()
	var sent []uint16
	for _, origin := range h.waiters {
		if hint := hintOf(origin); !slices.Contains(sent, hint) {
			sent = append(sent, hint)
			b.queueNotice(notice{kindLeaseFilled, hint, k})
		}
	}
}

// AwaitLease registers a waiter on the lease with token on key of
// namespace: wake receives a value when a lease on key may have been
// resolved since the call (in this process, or on a node that sent a
// "lease filled" notice). Unless this process holds a lease on key, it
// sends a "lease wait" notice to the inbox token names. done unregisters
// the waiter; it is safe to call more than once. It implements
// driver.LeaseWaker.
func (b *Bus) AwaitLease(namespace, key string, token uint64) (wake <-chan struct{}, done func()) {
	k := leaseKey{namespace, key}
	w := &leaseWaiter{wake: make(chan struct{}, 1)}
	n := &b.notes
	n.mu.Lock()
	n.waiters[k] = append(n.waiters[k], w)
	_, local := n.held[k]
	if n.resolvedLately(k, b.since()) {
		// A lease on key was resolved here a moment ago, maybe between
		// the caller's read of L2 and this call: let it read again.
		w.signal()
	}
	n.mu.Unlock()
	if !local {
		b.queueNotice(notice{kindLeaseWait, hintOf(token), k})
	}
	var once sync.Once
	return w.wake, func() { once.Do(func() { b.unawait(k, w) }) }
}

// keepEarly records that origin waits on k, for a HoldLease to come. Called
// with mu held.
func (n *notices) keepEarly(k leaseKey, origin uint64, now time.Duration) {
	// The key is a substring of a received payload: copy it, so that the
	// entry does not keep the whole payload alive.
	k = leaseKey{strings.Clone(k.namespace), strings.Clone(k.key)}
	e, ok := n.early[k]
	if !ok {
		if len(n.early) >= maxEarly {
			for x, e := range n.early {
				if now-e.at > recentWindow {
					delete(n.early, x)
				}
			}
			if len(n.early) >= maxEarly {
				return
			}
		}
		e.at = now
	}
	if !slices.Contains(e.origins, origin) {
		e.origins = append(e.origins, origin)
	}
	n.early[k] = e
}

func (b *Bus) unawait(k leaseKey, w *leaseWaiter) {
	n := &b.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	ws := n.waiters[k]
	for i, x := range ws {
		if x == w {
			ws[i] = ws[len(ws)-1]
			ws[len(ws)-1] = nil
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) == 0 {
		delete(n.waiters, k)
	} else {
		n.waiters[k] = ws
	}
}

// queueNotice hands a notice to the sender without waiting: when the
// queue is full or the bus closed, the notice is dropped (the waiters it
// was for poll). A namespace or key the wire format cannot carry is never
// sent.
func (b *Bus) queueNotice(nt notice) {
	if nt.k.namespace == "" || len(nt.k.namespace) > MaxNamespaceLen || nt.k.key == "" || len(nt.k.key) > MaxKeyLen || b.isClosed() {
		return
	}
	select {
	case b.notes.queue <- nt:
	default:
		b.log.Debug("invalidation: lease notice queue full; dropping a notice", "kind", nt.kind, "namespace", nt.k.namespace)
	}
}

// errNotNotice reports a message other than a notice on an inbox.
var errNotNotice = fmt.Errorf("%w: not a lease notice", ErrMalformed)

// notifyLoop is the sender goroutine of lease notices.
func (b *Bus) notifyLoop(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case first := <-b.notes.queue:
			batch := []notice{first}
		more:
			for len(batch) < maxNoticeBatch {
				select {
				case nt := <-b.notes.queue:
					batch = append(batch, nt)
				default:
					break more
				}
			}
			b.sendNotices(ctx, batch)
		}
	}
}

// sendNotices packs a batch into messages, one per notice kind, inbox and
// namespace as far as the limits allow (a notice queued twice goes once),
// and publishes them in one round trip.
func (b *Bus) sendNotices(ctx context.Context, batch []notice) {
	type group struct {
		kind      msgKind
		hint      uint16
		namespace string
	}
	type open struct {
		msg  *message
		size int
	}
	var msgs []*message
	var hints []uint16
	groups := make(map[group]open)
	seen := make(map[notice]struct{}, len(batch))
	for _, nt := range batch {
		if _, dup := seen[nt]; dup {
			continue
		}
		seen[nt] = struct{}{}
		g := group{nt.kind, nt.hint, nt.k.namespace}
		o, ok := groups[g]
		if !ok || len(o.msg.Keys) >= MaxKeysPerMessage || o.size+keySize(nt.k.key) > MaxMessageSize {
			o = open{msg: &message{Kind: nt.kind, Namespace: nt.k.namespace}, size: encodedSize(nt.k.namespace, nil) + 2}
			msgs = append(msgs, o.msg)
			hints = append(hints, nt.hint)
		}
		o.msg.Keys = append(o.msg.Keys, nt.k.key)
		o.size += keySize(nt.k.key)
		groups[g] = o
	}
	now := b.clock.Now().UnixNano()
	var channels []string
	var payloads [][]byte
	for i, m := range msgs {
		m.Origin, m.PublishedAt = b.origin, now
		if b.dropped(true, m) {
			continue
		}
		channels = append(channels, inboxName(b.channels[0], hints[i]))
		payloads = append(payloads, appendMessage(nil, m))
	}
	if len(payloads) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.publishTimeout)
	defer cancel()
	var err error
	if len(payloads) == 1 {
		err = b.publishCmd(ctx, b.client, channels[0], payloads[0]).Err()
	} else {
		pipe := b.client.Pipeline()
		for i, p := range payloads {
			b.publishCmd(ctx, pipe, channels[i], p)
		}
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		// Notices are hints: the waiters they were for poll.
		b.log.Debug("invalidation: sending lease notices failed", "error", err)
	}
}

// handleNotice applies a payload received on the bus's inbox. Nothing
// received there can carry an invalidation, so a payload that does not
// decode, or is not a notice, is counted and ignored: never a flush.
func (b *Bus) handleNotice(payload string) {
	m, err := decodeMessage(payload)
	if err == nil && !m.Kind.notice() {
		err = errNotNotice
	}
	if err != nil {
		b.stats.decodeErrors.Add(1)
		b.log.Debug("invalidation: ignoring an undecodable lease notice", "error", err)
		return
	}
	if b.dropped(false, &m) || m.Origin == b.origin {
		return
	}
	n := &b.notes
	if m.Kind == kindLeaseFilled {
		n.mu.Lock()
		for _, key := range m.Keys {
			for _, w := range n.waiters[leaseKey{m.Namespace, key}] {
				w.signal()
			}
		}
		n.mu.Unlock()
		return
	}
	now := b.since()
	var answer []leaseKey
	n.mu.Lock()
	for _, key := range m.Keys {
		k := leaseKey{m.Namespace, key}
		if h, ok := n.held[k]; ok {
			if !slices.Contains(h.waiters, m.Origin) {
				h.waiters = append(h.waiters, m.Origin)
				n.held[k] = h
			}
		} else if n.resolvedLately(k, now) {
			// The wait notice came after our resolution: answer it now.
			answer = append(answer, k)
		} else {
			// Before our HoldLease, maybe: keep it for a while.
			n.keepEarly(k, m.Origin, now)
		}
	}
	n.mu.Unlock()
	for _, k := range answer {
		b.queueNotice(notice{kindLeaseFilled, hintOf(m.Origin), k})
	}
}
