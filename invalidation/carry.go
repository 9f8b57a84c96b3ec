package invalidation

import (
	"context"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
)

// SendFunc is driver.SendFunc: it sends one bus message in the round trip
// of the caller's own write.
type SendFunc = driver.SendFunc

// Carry publishes key of the registration's namespace as Publish does,
// but lets send carry the message in the round trip of the caller's write
// of l2key (the key as written in Redis) through via, the store's
// driver.Carrier (see driver.CarryingSubscription). The bus carries only
// when via names the bus's own go-redis client (the message must reach the
// bus's Redis), when the key's channel is idle (nothing queued, no round
// trip in flight; otherwise the caller publishes the usual way and its
// message is batched with the others), and, on a Redis Cluster, only on a
// channel served by the node that owns l2key's slot: the key's own channel
// when it is, else another channel of that node. Invalidations are
// idempotent and every channel's sequence numbers stay in order, so a
// message on another channel of the node loses nothing; a node that serves
// none of the bus's channels gets its writes published the usual way.
func (s *subscription) Carry(ctx context.Context, key, l2key string, via driver.Carrier, send SendFunc) (carried bool, err error) {
	return s.b.carry(ctx, s.r.namespace, key, l2key, via, s.r, send)
}

func (b *Bus) carry(ctx context.Context, namespace, key, l2key string, via driver.Carrier, except *registration, send SendFunc) (bool, error) {
	if via != b.carrierID || len(key) > MaxKeyLen || checkNamespace(namespace) != nil || ctx.Err() != nil || b.isClosed() {
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
