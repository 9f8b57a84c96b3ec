package invalidation

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	client   Client
	cfg      config
	sharded  bool
	reload   func(context.Context) // nil unless the client is a Cluster
	origin   uint64
	epoch    time.Time // the zero of since
	channels []string

	pubs []*publisher
	subs []*subscriber

	regMu sync.RWMutex
	regs  map[string][]*registration // by namespace

	flushMu   sync.Mutex    // serialises flushAll
	flushReq  atomic.Uint64 // flushAll requests so far
	flushDone uint64        // requests covered by a completed flush; under flushMu

	lostMu sync.Mutex
	lost   map[uint64]time.Duration // origins flushed for silence, and when

	stats   counters
	tel     *telemetry
	started atomic.Bool // New has returned

	closeOnce sync.Once
	done      chan struct{} // closed by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

type registration struct {
	namespace  string
	invalidate func(keys []string)
	flush      func()
}

// New starts a bus on client: one publisher and one subscriber goroutine per
// channel, and one watchdog. It waits (up to the start timeout, see
// WithStartTimeout) until every channel is subscribed, so that a message
// published elsewhere after New returns reaches this bus. It returns an
// error only for a nil client, an invalid option, or a meter provider that
// refuses the bus's instruments; a Redis that cannot be reached makes the
// bus retry in the background.
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
	_, isCluster := client.(*redis.ClusterClient)
	sharded := isCluster
	if cfg.sharded != nil {
		sharded = *cfg.sharded
	}
	shards := cfg.shards
	if shards == 0 {
		shards = DefaultClassicShards
		if sharded {
			shards = DefaultShardedShards
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		client:   client,
		cfg:      cfg,
		sharded:  sharded,
		origin:   newOrigin(),
		epoch:    time.Now(),
		channels: channelNames(cfg.prefix, shards),
		regs:     make(map[string][]*registration),
		lost:     make(map[uint64]time.Duration),
		done:     make(chan struct{}),
		cancel:   cancel,
	}
	tel, err := newTelemetry(cfg.meterProvider, &b.stats)
	if err != nil {
		cancel()
		return nil, err
	}
	b.tel = tel
	if r, ok := client.(stateReloader); ok && isCluster {
		b.reload = r.ReloadState
	}
	for i, ch := range b.channels {
		b.pubs = append(b.pubs, newPublisher(b, i, ch))
		b.subs = append(b.subs, newSubscriber(b, i, ch))
	}
	for i := range b.channels {
		b.wg.Add(2)
		go b.pubs[i].run(ctx)
		go b.subs[i].run(ctx)
	}
	b.wg.Add(1)
	go b.watch(ctx)

	if cfg.startTimeout > 0 {
		timeout := time.NewTimer(cfg.startTimeout)
		defer timeout.Stop()
	wait:
		for _, s := range b.subs {
			select {
			case <-s.ready:
			case <-timeout.C:
				b.logWarn("invalidation: not every channel subscribed in time; retrying in the background",
					"timeout", cfg.startTimeout)
				break wait
			}
		}
	}
	b.started.Store(true)
	return b, nil
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
// this bus's own), flush when messages may have been lost (on any channel,
// for any namespace) and when another bus publishes a flush of namespace.
//
// The callbacks run on the bus's subscriber goroutines, possibly
// concurrently, and must be quick; they must not keep or modify keys, and
// must not call Subscribe or an unsubscribe function. unsubscribe stops the
// calls: once it returns, no callback of this registration runs or will
// run. It is safe to call more than once. Several registrations may share a
// namespace.
func (b *Bus) Subscribe(namespace string, invalidate func(keys []string), flush func()) (unsubscribe func(), err error) {
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
	var once sync.Once
	return func() { once.Do(func() { b.unregister(r) }) }, nil
}

func (b *Bus) unregister(r *registration) {
	b.regMu.Lock()
	defer b.regMu.Unlock()
	regs := slices.DeleteFunc(slices.Clone(b.regs[r.namespace]), func(x *registration) bool { return x == r })
	if len(regs) == 0 {
		delete(b.regs, r.namespace)
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

// Publish tells every other bus to call the invalidate callbacks of
// namespace with keys. Keys are spread over the channels by hash; Publish
// returns once Redis accepted every message carrying them, or with the first
// error (wrapping ErrPublish, ErrClosed or ctx's error). An error does not
// say the keys were not delivered, only that it is not known: retrying is
// safe. Publish with no key does nothing.
func (b *Bus) Publish(ctx context.Context, namespace string, keys []string) error {
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
	n := len(b.pubs)
	if n == 1 || len(keys) == 1 {
		p := b.pubs[shardOf(namespace, keys[0], n)]
		return b.submit(ctx, p, &request{kind: KindKeys, namespace: namespace, keys: slices.Clone(keys)})
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
		reqs[i] = &request{kind: KindKeys, namespace: namespace, keys: g}
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

// PublishFlush tells every other bus to call the flush callbacks of
// namespace. It returns once Redis accepted the message.
func (b *Bus) PublishFlush(ctx context.Context, namespace string) error {
	if err := checkNamespace(namespace); err != nil {
		return err
	}
	p := b.pubs[shardOf(namespace, "", len(b.pubs))]
	return b.submit(ctx, p, &request{kind: KindFlush, namespace: namespace})
}

func (b *Bus) submit(ctx context.Context, p *publisher, r *request) error {
	if err := p.enqueue(ctx, r); err != nil {
		return err
	}
	return p.wait(ctx, r)
}

// Close stops the bus: it fails pending publishes with ErrClosed, sends a
// last heartbeat on every channel saying this bus is leaving (so others
// forget it without waiting for silence), unsubscribes, and waits for every
// goroutine of the bus to return. No callback runs after Close returns. It
// does not close the client. It unregisters the bus's metrics callback.
// Close is idempotent and always returns nil.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		// Hold regMu so that no Subscribe registers after the check in it.
		b.regMu.Lock()
		close(b.done)
		b.regMu.Unlock()
		b.cancel()
		for _, s := range b.subs {
			s.kick()
		}
		b.wg.Wait()
		if err := b.tel.close(); err != nil {
			b.logWarn("invalidation: unregistering the metrics callback", "error", err)
		}
	})
	return nil
}

func (b *Bus) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// since returns the monotonic time since New.
func (b *Bus) since() time.Duration { return time.Since(b.epoch) }

func (b *Bus) silence() time.Duration {
	return time.Duration(b.cfg.silence) * b.cfg.heartbeat
}

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

// flushNamespace calls the flush callbacks of namespace.
func (b *Bus) flushNamespace(namespace string) {
	b.regMu.RLock()
	defer b.regMu.RUnlock()
	for _, r := range b.regs[namespace] {
		r.flush()
	}
}

// flushReason says why flushAll runs.
type flushReason uint8

const (
	reasonGap flushReason = iota + 1
	reasonResubscribe
	reasonSilence
)

// flushAll calls every flush callback of the bus. Concurrent requests are
// coalesced: a request waits for a flush that started after it was made, so
// when flushAll returns every entry cached before the call is gone, but
// several requests made while a flush runs share the next one.
func (b *Bus) flushAll(reason flushReason) {
	switch reason {
	case reasonGap:
		b.stats.flushGap.Add(1)
	case reasonResubscribe:
		b.stats.flushResubscribe.Add(1)
	case reasonSilence:
		b.stats.flushSilence.Add(1)
	}
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

// peerLost records that origin fell silent on a channel and flushes, once
// per origin however many channels notice it.
func (b *Bus) peerLost(origin uint64) {
	b.lostMu.Lock()
	_, seen := b.lost[origin]
	if !seen {
		b.lost[origin] = b.since()
	}
	b.lostMu.Unlock()
	if !seen {
		b.logWarn("invalidation: a bus fell silent; flushing", "origin", origin)
		b.flushAll(reasonSilence)
	}
}

// peerSeen records that origin was heard (again) on a channel.
func (b *Bus) peerSeen(origin uint64) {
	b.lostMu.Lock()
	delete(b.lost, origin)
	b.lostMu.Unlock()
}

// watch is the watchdog goroutine: four times per heartbeat interval it looks
// for silent channels and silent origins.
func (b *Bus) watch(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTicker(max(b.cfg.heartbeat/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := b.since()
		for _, s := range b.subs {
			s.check(now)
		}
		b.lostMu.Lock()
		for o, at := range b.lost {
			if now-at > 4*b.silence() {
				delete(b.lost, o)
			}
		}
		b.lostMu.Unlock()
	}
}

func (b *Bus) logWarn(msg string, args ...any) {
	if b.cfg.logger != nil {
		b.cfg.logger.Warn(msg, args...)
	}
}

func (b *Bus) logDebug(msg string, args ...any) {
	if b.cfg.logger != nil {
		b.cfg.logger.Debug(msg, args...)
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
