package driver

import "context"

// Bus carries invalidations between the nodes of a cluster; package
// invalidation provides it on Redis pub/sub. One bus is shared by every cache
// of a process, each under its own namespace. Implementations must be safe
// for concurrent use.
//
// A Bus that has a method Close() error (package invalidation's has)
// keeps these rules: once Close has returned no callback of any of its
// registrations runs or starts, a Publish (of the Bus or of a
// Subscription) or a Subscribe fails with an error, Unsubscribe is still
// safe, and a second Close returns nil.
//
// Package tiered/drivertest (RunBus) checks these rules.
type Bus interface {
	// Publish tells every node (the other caches of namespace in this
	// process too) to drop keys of namespace from its L1. The
	// registrations of namespace on this Bus have been given the keys when
	// Publish returns; other nodes get them asynchronously, Publish
	// returning once the message was accepted for delivery to every node.
	// Publish of no key does nothing and returns nil.
	Publish(ctx context.Context, namespace string, keys []string) error
	// Subscribe registers the L1 of a cache under namespace: invalidate is
	// called with keys others changed, flush when messages may have been
	// lost (the cache then drops everything): a message of keys that does
	// not reach this node must be made up by a flush. Registrations of
	// other namespaces get neither; several registrations may share a
	// namespace.
	//
	// The callbacks may run concurrently, on the bus's goroutines or on a
	// publisher's; the cache's are quick, do not keep or modify keys and
	// never call the Bus or the Subscription, so a Bus may run them under
	// a lock. The calls stop when the Subscription is ended.
	Subscribe(namespace string, invalidate func(keys []string), flush func()) (Subscription, error)
}

// Subscription is one cache's registration on a Bus.
type Subscription interface {
	// Publish is the Bus's Publish of the registration's namespace, as the
	// registration: every subscriber of the namespace gets it but this one,
	// so that a cache does not drop the value it has just written.
	Publish(ctx context.Context, keys []string) error
	// Unsubscribe ends the registration: once it returns, no callback of
	// the registration runs or starts. It is safe to call more than once.
	Unsubscribe()
}

// SendFunc sends one bus message in the round trip of the caller's own
// write: command (PUBLISH or SPUBLISH) with channel and payload, on the
// connection of the write, right after it. A nil payload means the message
// was dropped (a test hook): the caller does its write alone. It returns
// the message's outcome.
type SendFunc = func(ctx context.Context, command, channel string, payload []byte) error

// CarryingSubscription is the optional interface of a Subscription that
// lets the cache carry the invalidation of a one-key write in the write's
// own round trip (package invalidation's does, with a PublishCarrier store).
//
// Carry publishes key like Publish, but lets send carry the message right
// after the caller's write of l2key (the key as written in the store)
// through via, the store's Carrier. carried reports whether send was
// called: when it is false nothing was written or published (the bus
// declined: another pool, a busy channel, a slot served elsewhere) and the
// caller writes and publishes the usual way. When it is true, err is the
// message's outcome (the write's outcome is the caller's).
//
// Without it, the cache publishes a write's invalidation after the write.
type CarryingSubscription interface {
	Carry(ctx context.Context, key, l2key string, via Carrier, send SendFunc) (carried bool, err error)
}

// LeaseWaker is the optional interface of a Bus that wakes the callers
// waiting on a load lease when the holder resolves it, so that they need
// not find out by polling L2. Package invalidation implements it. The cache
// still polls L2 with backoff while it waits: a wake is a hint that the
// lease may have been resolved, never the only way to learn it, so a lost
// notice costs latency, not correctness.
//
// The cache takes its lease tokens from LeaseToken, calls HoldLease when
// it has taken a lease on a key and LeaseResolved once it has replaced the
// lease in L2 by the value, a marker or nothing. A caller that finds
// another's lease calls AwaitLease with the lease's token, and done when it
// stops waiting. Keys are the cache's keys (without the L2 prefix),
// namespace is the cache's name. All methods are safe for concurrent use
// and quick: they never wait on the network.
//
// Without it, waiters poll L2 only, and lease tokens are random.
type LeaseWaker interface {
	// LeaseToken returns a fresh, random, non-zero lease token that tells
	// the waiters on the lease how to reach this process. Tokens of one
	// process do not repeat in practice (the lease protocol tells leases
	// apart by them).
	LeaseToken() uint64
	// HoldLease records that this process holds the lease on key of
	// namespace, so that waiters on other nodes that announce themselves
	// get a notice when it is resolved. It sends nothing.
	HoldLease(namespace, key string)
	// LeaseResolved ends a HoldLease: it wakes the waiters of this process
	// on key at once and sends a notice to the nodes whose waiters
	// announced themselves while the lease was held (or shortly after).
	LeaseResolved(namespace, key string)
	// AwaitLease registers a waiter on the lease with token on key of
	// namespace, held by another node or another cache of this process,
	// and announces it to the holder (unless this process holds a lease on
	// key itself). wake receives a value when a lease on key may have been
	// resolved since the call. done unregisters the waiter; it is safe to
	// call more than once.
	AwaitLease(namespace, key string, token uint64) (wake <-chan struct{}, done func())
}
