package invalidation

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
)

// Client is the part of a go-redis client the bus uses. *redis.Client
// (standalone, and Sentinel through redis.NewFailoverClient) and
// *redis.ClusterClient satisfy it. The bus does not close the client.
type Client interface {
	Process(ctx context.Context, cmd redis.Cmder) error
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
	SSubscribe(ctx context.Context, channels ...string) *redis.PubSub
	Pipeline() redis.Pipeliner
}

// stateReloader is implemented by *redis.ClusterClient: it refreshes the
// slot map, so that a subscription renewed after a slot migration goes to
// the slot's new owner.
type stateReloader interface {
	ReloadState(ctx context.Context)
}

// Bus is the invalidation bus of a process: it publishes the keys its caches
// change and calls the callbacks its caches registered when other buses
// publish theirs. One Bus serves any number of caches, one namespace each.
//
// A Bus is safe for concurrent use. Its zero value is not usable; create it
// with New and stop it with Close.
type Bus struct {
	client    Client
	carrierID driver.Carrier // names client, for Carry
	cfg       config
	clock     driver.Clock
	log       *slog.Logger
	sharded   bool
	reload    func(context.Context) // nil unless the client is a Cluster
	origin    uint64
	epoch     time.Time // the zero of since
	channels  []string
	announce  string // the announcement channel (same slot as channels[0])
	inbox     string // the channel of lease notices to this bus (same slot; notify.go)

	pubs []*publisher
	subs []*subscriber

	regMu   sync.RWMutex
	regs    map[string][]*registration // by namespace
	written map[string]struct{}        // namespaces published without a registration

	flushMu   sync.Mutex    // serialises flushAll
	flushReq  atomic.Uint64 // flushAll requests so far
	flushDone uint64        // requests covered by a completed flush; under flushMu

	originsMu sync.Mutex
	origins   map[uint64]*originState // other buses heard on the announcement channel

	annSeq    atomic.Uint64 // announcements sent
	proofSent atomic.Int64  // since() at which the newest own announcement that came back in time was sent; -1: none yet
	proofLag  atomic.Int64  // lag of that announcement
	healthy   atomic.Bool   // the watchdog's verdict
	resets    chan int      // subscriber indexes to reset, for the resetter
	watchRuns atomic.Uint64 // watchdog rounds completed (for tests)
	annRounds atomic.Uint64 // announcer rounds completed (for tests)
	proved    chan struct{} // closed when the first own announcement came back
	provedOne sync.Once

	notes notices // lease notices (notify.go)

	stats   counters
	tel     *telemetry
	started atomic.Bool // New has returned

	closeOnce sync.Once
	done      chan struct{} // closed by Close
	leaveBy   time.Time     // the leave deadline; set by Close before cancel
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	pubWG     sync.WaitGroup // the publishers, which stop before the last announcement
}

type registration struct {
	namespace  string
	invalidate func(keys []string)
	flush      func()
}

// originState is what the bus knows of another bus from its announcements.
type originState struct {
	heard      time.Duration // since() of its last announcement
	namespaces []string      // the namespaces it announced
	silent     bool          // it fell silent and the bus flushed for it
	leaving    time.Duration // since() of its leaving announcement; 0 if none
}

// New starts a bus on client: one publisher and one subscriber goroutine per
// channel, one announcer, one watchdog and one resetter. It first checks
// that Redis lets it subscribe and publish: a wrong password, a missing
// permission or an unknown command fails New with an error wrapping
// ErrRedisRefused that names the problem. It then waits (up to the start
// timeout, see WithStartTimeout) until every channel is subscribed and the
// bus's first announcement came back, so that a message published
// elsewhere after New returns reaches this bus. A Redis that cannot be
// reached is not an error: the bus logs it and retries in the background
// (and counts as unhealthy, flushing its caches, until it gets there). New
// also fails for a nil client, an invalid option, or a meter provider that
// refuses the bus's instruments.
func New(client Client, opts ...Option) (*Bus, error) {
	if isNilClient(client) {
		return nil, ErrNilClient
	}
	cfg := defaultConfig()
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i)
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.lagLimit == 0 {
		cfg.lagLimit = cfg.heartbeat
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	clock := cfg.clock
	if clock == nil {
		clock = driver.SystemClock
	}
	_, isCluster := client.(*redis.ClusterClient)
	sharded := isCluster
	if cfg.sharded != nil {
		sharded = *cfg.sharded
	}
	b := &Bus{
		client:    client,
		carrierID: driver.NewCarrier(client),
		cfg:       cfg,
		clock:     clock,
		log:       log,
		sharded:   sharded,
		origin:    newOrigin(),
		epoch:     clock.Now(),
		regs:      make(map[string][]*registration),
		written:   make(map[string]struct{}),
		origins:   make(map[uint64]*originState),
		done:      make(chan struct{}),
		proved:    make(chan struct{}),
	}
	b.notes.init()
	b.setChannels()
	if err := b.probe(isCluster); err != nil {
		return nil, err
	}
	tel, err := newTelemetry(cfg.meterProvider, &b.stats)
	if err != nil {
		return nil, err
	}
	b.tel = tel
	if r, ok := client.(stateReloader); ok && isCluster {
		b.reload = r.ReloadState
	}
	b.proofSent.Store(-1)
	// Healthy until the watchdog, which owns the verdict from here on,
	// says otherwise (it may while New waits below).
	b.healthy.Store(true)
	b.resets = make(chan int, len(b.channels))
	for i, ch := range b.channels {
		b.pubs = append(b.pubs, newPublisher(b, i, ch))
		b.subs = append(b.subs, newSubscriber(b, i, ch))
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	for i := range b.channels {
		b.wg.Add(2)
		b.pubWG.Add(1)
		go b.pubs[i].run(ctx)
		go b.subs[i].run(ctx)
	}
	b.wg.Add(4)
	go b.announceLoop(ctx)
	go b.watch(ctx)
	go b.resetter(ctx)
	go b.notifyLoop(ctx)

	if cfg.startTimeout > 0 {
		b.waitReady(cfg.startTimeout)
	}
	b.started.Store(true)
	return b, nil
}

// setChannels names the channels for the configured transport.
func (b *Bus) setChannels() {
	shards := b.cfg.shards
	if shards == 0 {
		shards = DefaultClassicShards
		if b.sharded {
			shards = DefaultShardedShards
		}
	}
	b.channels = channelNames(b.cfg.prefix, shards)
	// Same hash tag as channel 0: one subscription carries all three.
	b.announce = b.channels[0] + ":ann"
	b.inbox = inboxName(b.channels[0], hintOf(b.origin))
}

// waitReady waits until every channel is subscribed and the bus's own first
// announcement came back, or timeout.
func (b *Bus) waitReady(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, s := range b.subs {
		select {
		case <-s.ready:
		case <-time.After(time.Until(deadline)):
			b.log.Warn("invalidation: not every channel subscribed in time; retrying in the background", "timeout", timeout)
			return
		}
	}
	select {
	case <-b.proved:
	case <-time.After(time.Until(deadline)):
		b.log.Warn("invalidation: the bus's first announcement did not come back in time", "timeout", timeout)
	}
}

func isNilClient(c Client) bool {
	switch c := c.(type) {
	case nil:
		return true
	case *redis.Client:
		return c == nil
	case *redis.ClusterClient:
		return c == nil
	}
	return false
}

// newOrigin returns a random non-zero node id.
func newOrigin() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// Origin returns the random id of this bus, carried by every message it
// sends.
func (b *Bus) Origin() uint64 { return b.origin }

// Channels returns the names of the bus's channels, one per shard.
func (b *Bus) Channels() []string { return slices.Clone(b.channels) }

// Stats returns a snapshot of the bus's counters.
func (b *Bus) Stats() Stats { return b.stats.snapshot() }

// Subscribe registers the L1 of a cache under namespace. invalidate is
// called with the keys of namespace that other buses publish (never with
// this bus's own), and with the keys published through this bus by anyone
// but the registration itself (see Subscription.Publish); flush when
// messages may have been lost and when another bus publishes a flush of
// namespace.
//
// The callbacks run on the bus's goroutines (and, for local delivery, on
// the publishing goroutine), possibly concurrently, and must be quick; they
// must not keep or modify keys, and must not call Subscribe or
// Unsubscribe. Unsubscribe stops the calls: once it returns, no callback
// of this registration runs or will run. Several registrations may share a
// namespace. The Subscription is a driver.CarryingSubscription.
func (b *Bus) Subscribe(namespace string, invalidate func(keys []string), flush func()) (driver.Subscription, error) {
	if err := checkNamespace(namespace); err != nil {
		return nil, err
	}
	if invalidate == nil || flush == nil {
		return nil, fmt.Errorf("%w: nil callback for namespace %q", ErrInvalidOption, namespace)
	}
	r := &registration{namespace: namespace, invalidate: invalidate, flush: flush}
	b.regMu.Lock()
	defer b.regMu.Unlock()
	if b.isClosed() {
		return nil, ErrClosed
	}
	b.regs[namespace] = append(slices.Clip(b.regs[namespace]), r)
	return &subscription{b: b, r: r}, nil
}

// subscription is a registration as the caller sees it.
type subscription struct {
	b    *Bus
	r    *registration
	once sync.Once
}

// Publish publishes keys of the registration's namespace as Bus.Publish
// does, and delivers them to every other registration of the namespace on
// this bus but not to this one (a cache that wrote a key keeps its own
// fresh copy).
func (s *subscription) Publish(ctx context.Context, keys []string) error {
	return s.b.publish(ctx, s.r.namespace, keys, s.r)
}

// Unsubscribe ends the registration; it is safe to call more than once.
func (s *subscription) Unsubscribe() { s.once.Do(func() { s.b.unregister(s.r) }) }

func (b *Bus) unregister(r *registration) {
	b.regMu.Lock()
	defer b.regMu.Unlock()
	regs := slices.DeleteFunc(slices.Clone(b.regs[r.namespace]), func(x *registration) bool { return x == r })
	if len(regs) == 0 {
		delete(b.regs, r.namespace)
		b.written[r.namespace] = struct{}{} // it may have written: keep announcing it
	} else {
		b.regs[r.namespace] = regs
	}
}

func checkNamespace(ns string) error {
	if ns == "" {
		return fmt.Errorf("%w: empty", ErrNamespace)
	}
	if len(ns) > MaxNamespaceLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrNamespace, len(ns), MaxNamespaceLen)
	}
	return nil
}

// Publish tells every other bus, and every registration of namespace on
// this bus, to drop keys of namespace. Keys are spread over the channels by
// hash; Publish returns once Redis accepted every message carrying them, or
// with the first error (wrapping ErrPublish, ErrClosed or ctx's error). An
// error does not say the keys were not delivered, only that it is not
// known: retrying is safe. Publish with no key does nothing.
func (b *Bus) Publish(ctx context.Context, namespace string, keys []string) error {
	return b.publish(ctx, namespace, keys, nil)
}

// publish is Publish, delivering locally to every registration of
// namespace but except.
func (b *Bus) publish(ctx context.Context, namespace string, keys []string, except *registration) error {
	if err := checkNamespace(namespace); err != nil {
		return err
	}
	for _, k := range keys {
		if len(k) > MaxKeyLen {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLong, len(k), MaxKeyLen)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	b.noteWritten(namespace)
	b.deliverLocal(namespace, keys, except)
	n := len(b.pubs)
	if n == 1 || len(keys) == 1 {
		p := b.pubs[shardOf(namespace, keys[0], n)]
		return b.submit(ctx, p, &request{kind: kindKeys, namespace: namespace, keys: slices.Clone(keys)})
	}
	groups := make([][]string, n)
	for _, k := range keys {
		i := shardOf(namespace, k, n)
		groups[i] = append(groups[i], k)
	}
	reqs := make([]*request, n)
	for i, g := range groups {
		if len(g) == 0 {
			continue
		}
		reqs[i] = &request{kind: kindKeys, namespace: namespace, keys: g}
		if err := b.pubs[i].enqueue(ctx, reqs[i]); err != nil {
			return err
		}
	}
	var first error
	for i, r := range reqs {
		if r == nil {
			continue
		}
		if err := b.pubs[i].wait(ctx, r); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// noteWritten remembers that this bus wrote namespace, so that its
// announcements name it even without a registration.
func (b *Bus) noteWritten(namespace string) {
	b.regMu.RLock()
	_, ok := b.written[namespace]
	_, reg := b.regs[namespace]
	b.regMu.RUnlock()
	if ok || reg {
		return
	}
	b.regMu.Lock()
	b.written[namespace] = struct{}{}
	b.regMu.Unlock()
}

// deliverLocal calls the invalidate callbacks of namespace on this bus, but
// except's, unless the bus is closed: Close sets done under regMu, so a
// delivery either runs before Close takes the lock (and Close waits for
// it) or sees the bus closed, and no callback runs after Close returns.
func (b *Bus) deliverLocal(namespace string, keys []string, except *registration) {
	b.regMu.RLock()
	defer b.regMu.RUnlock()
	if b.isClosed() {
		return
	}
	for _, r := range b.regs[namespace] {
		if r != except {
			r.invalidate(keys)
		}
	}
}

// PublishFlush tells every other bus, and every registration of namespace
// on this bus, to flush the caches of namespace. It returns once Redis
// accepted the message.
func (b *Bus) PublishFlush(ctx context.Context, namespace string) error {
	if err := checkNamespace(namespace); err != nil {
		return err
	}
	b.noteWritten(namespace)
	b.flushNamespaces([]string{namespace})
	p := b.pubs[shardOf(namespace, "", len(b.pubs))]
	return b.submit(ctx, p, &request{kind: kindFlush, namespace: namespace})
}

func (b *Bus) submit(ctx context.Context, p *publisher, r *request) error {
	return p.submit(ctx, r)
}

// LeaveTimeout bounds the goodbye of Close: the last heartbeats and the
// leaving announcement are sent within it of the call to Close, or not at
// all (then the others notice the silence instead). A healthy Redis takes
// a round trip.
const LeaveTimeout = 250 * time.Millisecond

// Close stops the bus: it fails pending publishes with ErrClosed, sends a
// last announcement saying this bus is leaving (so others forget it without
// waiting for silence), closes its subscriptions (and so their
// connections), and waits for every goroutine of the bus to return. No
// callback runs after Close returns. It does not close the client. It
// unregisters the bus's metrics callback. Close is idempotent and always
// returns nil.
//
// Close returns within max(PublishTimeout, LeaveTimeout), 500 ms with the
// defaults, plus scheduling, whatever Redis does (down, frozen, cut off): a
// round trip in flight ends by its publish timeout, a subscription is
// (re)connected (dial, HELLO, SUBSCRIBE) under one and read without holding
// what Close needs to close it, and the goodbye gets LeaveTimeout from the
// call to Close, or is skipped. This needs a client
// with ContextTimeoutEnabled: without it go-redis ignores the deadlines on
// socket reads and Close can wait for the client's ReadTimeout (3 s by
// default) instead.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		// Hold regMu so that no Subscribe registers after the check in it.
		b.regMu.Lock()
		close(b.done)
		b.regMu.Unlock()
		b.leaveBy = time.Now().Add(LeaveTimeout)
		b.cancel() // publishes b.leaveBy to the goroutines, which read it after ctx.Done
		// Closing a subscription makes its receive return at once; it
		// waits while go-redis reconnects it, for at most a publish
		// timeout.
		var kicks sync.WaitGroup
		for _, s := range b.subs {
			kicks.Go(s.kick)
		}
		kicks.Wait()
		b.wg.Wait()
		if err := b.tel.close(); err != nil {
			b.log.Warn("invalidation: unregistering the metrics callback", "error", err)
		}
	})
	return nil
}

// leaveContext returns the context of the goodbye, for a goroutine whose
// ctx Close cancelled: ctx's values, the leave deadline.
func (b *Bus) leaveContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.WithoutCancel(ctx), b.leaveBy)
}

func (b *Bus) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// since returns the time on the bus's clock since New.
func (b *Bus) since() time.Duration { return b.clock.Now().Sub(b.epoch) }

// silence is how long another bus may go unheard before it counts as gone.
func (b *Bus) silence() time.Duration {
	return time.Duration(b.cfg.silence) * b.cfg.heartbeat
}

// DetectionTime returns D, the loss-detection time: the longest a lost,
// delayed or undeliverable invalidation can go unnoticed by this bus, and so
// the longest an L1 entry outlives the write that replaced it (when LocalTTL
// is longer):
//
//	D = max(HeartbeatInterval + 2 × LagLimit, SilenceIntervals × HeartbeatInterval) + HeartbeatInterval/4
//
// 3.25 s with the defaults. See the package documentation.
func (b *Bus) DetectionTime() time.Duration {
	i := b.cfg.heartbeat
	return max(i+2*b.cfg.lagLimit, b.silence()) + b.tick()
}

// tick is the watchdog's period.
func (b *Bus) tick() time.Duration { return max(b.cfg.heartbeat/4, time.Millisecond) }

// invalidate calls the invalidate callbacks of namespace and reports whether
// there were any.
func (b *Bus) invalidate(namespace string, keys []string) bool {
	b.regMu.RLock()
	defer b.regMu.RUnlock()
	regs := b.regs[namespace]
	for _, r := range regs {
		r.invalidate(keys)
	}
	return len(regs) > 0
}

// flushNamespaces calls the flush callbacks of namespaces (those with a
// registration here), unless the bus is closed (see deliverLocal).
func (b *Bus) flushNamespaces(namespaces []string) {
	b.regMu.RLock()
	defer b.regMu.RUnlock()
	if b.isClosed() {
		return
	}
	for _, ns := range namespaces {
		for _, r := range b.regs[ns] {
			r.flush()
		}
	}
}

// flushReason says why a flush runs.
type flushReason uint8

const (
	reasonGap flushReason = iota + 1
	reasonResubscribe
	reasonSilence
	reasonUnhealthy
	reasonUndecodable
)

func (b *Bus) countFlush(reason flushReason) {
	switch reason {
	case reasonGap:
		b.stats.flushGap.Add(1)
	case reasonResubscribe:
		b.stats.flushResubscribe.Add(1)
	case reasonSilence:
		b.stats.flushSilence.Add(1)
	case reasonUnhealthy:
		b.stats.flushUnhealthy.Add(1)
	case reasonUndecodable:
		b.stats.flushUndecodable.Add(1)
	}
}

// flushAll calls every flush callback of the bus. Concurrent requests are
// coalesced: a request waits for a flush that started after it was made, so
// when flushAll returns every entry cached before the call is gone, but
// several requests made while a flush runs share the next one.
func (b *Bus) flushAll(reason flushReason) {
	b.countFlush(reason)
	want := b.flushReq.Add(1)
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	if b.flushDone >= want {
		return // a flush that started after our request has completed
	}
	covered := b.flushReq.Load()
	b.regMu.RLock()
	for _, regs := range b.regs {
		for _, r := range regs {
			r.flush()
		}
	}
	b.regMu.RUnlock()
	b.flushDone = covered
}

// flushOrigin flushes what a loss from origin may have left stale: the
// namespaces it announced (and extra, the namespace of the message that
// showed the loss), or every cache when it never announced.
func (b *Bus) flushOrigin(origin uint64, reason flushReason, extra string) {
	b.originsMu.Lock()
	o := b.origins[origin]
	var ns []string
	if o != nil {
		ns = o.namespaces
	}
	b.originsMu.Unlock()
	if o == nil {
		b.flushAll(reason)
		return
	}
	b.countFlush(reason)
	if extra != "" && !slices.Contains(ns, extra) {
		ns = append(slices.Clip(ns), extra)
	}
	b.flushNamespaces(ns)
}

// requestReset asks the resetter to renew subscriber i's subscription,
// without waiting.
func (b *Bus) requestReset(i int) {
	if b.subs[i].resetPending.CompareAndSwap(false, true) {
		select {
		case b.resets <- i:
		default:
			b.subs[i].resetPending.Store(false)
		}
	}
}

// resetter closes the subscriptions the watchdog wants renewed. Closing a
// go-redis PubSub can block while it redials; that blocks this goroutine,
// never the watchdog.
func (b *Bus) resetter(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case i := <-b.resets:
			b.subs[i].resetPending.Store(false)
			b.subs[i].kick()
		}
	}
}

// publishCmd sends one message with the bus's transport, on c (the client
// or a pipeline). The channel is marked as the command's key, so that a
// Cluster client sends every message of a channel to the node owning its
// slot, in order: go-redis would send a classic PUBLISH (keyless for it) to
// a random node, and messages relayed by different nodes may arrive out of
// order.
func (b *Bus) publishCmd(ctx context.Context, c interface {
	Process(context.Context, redis.Cmder) error
}, channel string, payload []byte) *redis.IntCmd {
	name := "publish"
	if b.sharded {
		name = "spublish"
	}
	cmd := redis.NewIntCmd(ctx, name, channel, payload)
	cmd.SetFirstKeyPos(1)
	_ = c.Process(ctx, cmd) // the error is cmd.Err()
	return cmd
}

// isRedisError reports whether err is an error reply from Redis (as opposed
// to a network or client error).
func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// The contract the bus implements (package tiered/driver).
var (
	_ driver.Bus                  = (*Bus)(nil)
	_ driver.LeaseWaker           = (*Bus)(nil)
	_ driver.CarryingSubscription = (*subscription)(nil)
)
