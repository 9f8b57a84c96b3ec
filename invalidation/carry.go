package invalidation

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// SendFunc sends one message of the bus in the round trip of the caller's
// own write: command (PUBLISH or SPUBLISH) with channel and payload, on the
// connection of the write, right after it, so that Redis runs the write
// first and the message follows it. A nil payload means the message was
// dropped (a test hook): the caller does its write alone. It returns the
// message's outcome.
type SendFunc = func(ctx context.Context, command, channel string, payload []byte) error

// CarryFunc publishes key of a namespace like a publish function of
// SubscribePublisher, but lets send carry the message in the round trip of
// the caller's write of l2key (the key as written in Redis). via is the
// go-redis client send uses; the bus carries only when it is the bus's own
// client (the message must reach the bus's Redis). carried reports whether
// send was called: when it is false nothing was written or published, and
// the caller writes and publishes the usual way. When it is true, err is
// the message's outcome (the write's outcome is the caller's).
type CarryFunc = func(ctx context.Context, key, l2key string, via any, send SendFunc) (carried bool, err error)

// SubscribeCarrier is SubscribePublisher that also returns a CarryFunc
// bound to the same registration, so that a cache can write a key and
// publish its invalidation in one round trip.
//
// The bus carries a message only when the key's channel is idle (nothing
// queued, no round trip in flight; otherwise the caller publishes the usual
// way and its message is batched with the others), and, on a Redis Cluster,
// only on a channel served by the node that owns l2key's slot: the key's
// own channel when it is, else another channel of that node. Invalidations
// are idempotent and every channel's sequence numbers stay in order, so a
// message on another channel of the node loses nothing; a node that serves
// none of the bus's channels gets its writes published the usual way.
func (b *Bus) SubscribeCarrier(namespace string, invalidate func(keys []string), flush func()) (publish func(ctx context.Context, keys []string) error, carry CarryFunc, unsubscribe func(), err error) {
	publish, unsubscribe, err = b.SubscribePublisher(namespace, invalidate, flush)
	if err != nil {
		return nil, nil, nil, err
	}
	b.regMu.RLock()
	regs := b.regs[namespace]
	r := regs[len(regs)-1] // the registration SubscribePublisher just added
	b.regMu.RUnlock()
	carry = func(ctx context.Context, key, l2key string, via any, send SendFunc) (bool, error) {
		return b.carry(ctx, namespace, key, l2key, via, r, send)
	}
	return publish, carry, unsubscribe, nil
}

func (b *Bus) carry(ctx context.Context, namespace, key, l2key string, via any, except *registration, send SendFunc) (bool, error) {
	if via != any(b.client) || len(key) > MaxKeyLen || checkNamespace(namespace) != nil || ctx.Err() != nil || b.isClosed() {
		return false, nil // the usual path reports what is wrong
	}
	p := b.carrier(ctx, namespace, key, l2key)
	if p == nil || len(p.queue) > 0 || !p.sending.TryLock() {
		return false, nil
	}
	b.noteWritten(namespace)
	keys := []string{key}
	r := &request{kind: kindKeys, namespace: namespace, keys: keys, done: make(chan error, 1)}
	command := "publish"
	if b.sharded {
		command = "spublish"
	}
	p.sendVia(ctx, []*request{r}, func(ctx context.Context, payloads [][]byte) []error {
		if len(payloads) == 0 {
			_ = send(ctx, command, p.channel, nil)
			return nil
		}
		if err := send(ctx, command, p.channel, payloads[0]); err != nil {
			return []error{p.wrap(err)}
		}
		return []error{nil}
	})
	p.sent()
	// Local delivery after the write, never before it: another cache of
	// the namespace on this bus must not re-read the old value.
	b.deliverLocal(namespace, keys, except)
	return true, <-r.done
}

// carrier returns the publisher that may carry a message about key, written
// under l2key, or nil.
func (b *Bus) carrier(ctx context.Context, namespace, key, l2key string) *publisher {
	own := shardOf(namespace, key, len(b.pubs))
	cc, ok := b.client.(*redis.ClusterClient)
	if !ok {
		return b.pubs[own]
	}
	if !b.sharded {
		return nil // a classic PUBLISH is broadcast from whichever node gets it
	}
	node, err := cc.MasterForKey(ctx, l2key)
	if err != nil {
		return nil
	}
	for i := range b.pubs {
		p := b.pubs[(own+i)%len(b.pubs)]
		if n, err := cc.MasterForKey(ctx, p.channel); err == nil && n == node {
			return p
		}
	}
	return nil
}
