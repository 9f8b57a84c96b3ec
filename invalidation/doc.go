// Package invalidation is the cross-node L1 invalidation bus of tiercache,
// on Redis pub/sub (go-redis v9; standalone, Sentinel or Cluster).
//
// Every process creates one Bus and shares it between its caches, each
// under its own namespace:
//
//	bus, err := invalidation.New(rdb) // *redis.Client or *redis.ClusterClient
//	defer bus.Close()
//	sub, err := bus.Subscribe("users",
//		func(keys []string) { l1.Invalidate(keys...) }, l1.Flush)
//	defer sub.Unsubscribe()
//	err = bus.Publish(ctx, "users", []string{"42"}) // after the L2 write
//
// A Bus implements driver.Bus and driver.LeaseWaker (package
// tiered/driver), and its subscriptions driver.CarryingSubscription.
//
// # Channels
//
// The bus talks on a fixed set of channels named prefix:{tag} (WithShards,
// WithChannelPrefix). With sharded pub/sub (SPUBLISH/SSUBSCRIBE, the default
// on a Cluster) each channel lives on the primary that owns its slot; the
// tags are chosen so the channels' slots are evenly spaced over the 16384
// slots, hence spread over the primaries. A key's messages always go on the
// same channel (a hash of namespace and key picks it). Each channel has one
// subscription connection per bus, pinned by go-redis to the slot's owner.
// Classic PUBLISH/SUBSCRIBE (the default elsewhere, and an option on a
// Cluster) works the same way with one channel by default.
//
// # Messages
//
// A message is a compact binary record, versioned (see the wire format in
// message.go): origin (a random id chosen by New), sequence number, kind
// (keys, flush, heartbeat, announcement, or a lease notice), namespace,
// keys, and publish time. The decoder
// rejects anything malformed or over the limits MaxMessageSize,
// MaxKeysPerMessage, MaxKeyLen and MaxNamespaceLen, and is fuzzed.
//
// # Publishing
//
//  1. Publish validates the namespace and keys, splits the keys by channel
//     and queues one request per channel.
//  2. Each channel has one publisher goroutine. When it is free it takes
//     every request queued (up to a bound), packs their keys into as few
//     messages as the limits allow (one namespace per message), numbers
//     the messages with its channel's next sequence numbers, and sends them
//     in one round trip (a pipeline when there are several). A lone write
//     on an idle channel (nothing queued, no round trip in flight) is sent
//     by its caller at once, without a hand-off; writes that arrive while a
//     round trip is in flight queue and share the next one. Either way the
//     messages of a channel are numbered and sent one round trip at a
//     time, in order. A subscription's Carry lets a cache carry its lone
//     write's message in the round trip of its own L2 write.
//  3. Publish returns when Redis accepted every message carrying its keys,
//     or with the first error.
//  4. One heartbeat interval (WithHeartbeatInterval, default 1 s) after its
//     last message on a channel, a publisher sends one heartbeat there
//     carrying the channel's sequence number; an idle channel costs
//     nothing.
//  5. Publish also delivers the keys at once to the other caches of the
//     namespace on this bus (two caches of one name in one process
//     invalidate each other); a Subscription's Publish publishes as the
//     registration, so that the writing cache keeps its own copy.
//
// # Announcements: liveness without N² traffic
//
// Every bus announces itself once per heartbeat interval on one channel
// (prefix:{tag0}:ann, in the slot of the first channel, carried by the same
// subscription): its origin id, its sequence number on every channel it has
// used, and the namespaces it can write (those subscribed on it and those
// it published to). An idle cluster of N buses costs N messages per
// interval whatever the number of channels (it cost N × channels before).
// Close sends a last announcement marked "leaving" (within LeaveTimeout of
// the call, or not at all).
//
// # Lease notices: waking lease waiters
//
// A Bus also implements driver.LeaseWaker: a cache waiting on another
// node's load lease is woken when the holder resolves it, instead of
// finding out at its next poll of L2 (see notify.go for the protocol).
// Every bus listens on an inbox, prefix:{tag0}:in:hhhh (hhhh: the top 16
// bits of its origin, which its caches' lease tokens carry too). A waiter's
// bus sends a "lease wait" notice to the holder's inbox, named by the token
// it read; the holder's bus, when its cache has resolved the lease, sends a
// "lease filled" notice to each waiting bus's inbox, and wakes waiters of
// its own process directly. Nothing is sent for a load nobody waits for; a
// stampede of N nodes costs 2(N-1) notices, each delivered to one bus.
// Notices are hints: waiters keep polling, so a lost notice costs latency,
// never correctness; they carry no sequence number and never cause a
// flush.
//
// # Receiving and loss detection
//
//  1. Each channel has one subscriber goroutine reading its subscription.
//     Messages from the bus itself are ignored (they come back too).
//  2. Sequence numbers are tracked per (origin, channel). A keys or flush
//     message must carry the next number; a heartbeat must repeat the last
//     one. Anything ahead is a gap: messages were lost, and the bus flushes
//     the caches of the namespaces the origin announced (every cache when it
//     never announced). The first message of an origin must be its first:
//     a first contact further on counts as a gap too.
//  3. A sequence number an announcement gives for a channel must arrive on
//     that channel within the lag limit (WithLagLimit, default one
//     interval); if not, the messages in between were lost or are late: the
//     origin's namespaces are flushed and the subscription renewed.
//  4. An origin whose announcements stop for WithSilenceIntervals intervals
//     (default 3) is gone: the caches of the namespaces it announced are
//     flushed, once. Another service on the same Redis flushes nothing of
//     ours: it announces other namespaces (and with its own channel prefix,
//     WithChannelPrefix, it is not even heard).
//  5. Healthy means proven: the bus is healthy only while its own
//     announcements come back through its subscription with a lag under the
//     lag limit, and every subscription is confirmed. When the newest
//     announcement sent more than a lag limit ago has not come back (a dead
//     or half-open connection, a partitioned node, a lagging subscriber),
//     or a subscription is lost, the bus is unhealthy: it flushes every
//     cache at once, again every D/2 while it stays unhealthy (so no L1
//     entry lives longer than D), and once more when it recovers; and it
//     renews its subscription. The watchdog that decides this never waits
//     on the network: renewals run on a separate goroutine (closing a
//     go-redis PubSub can block while it redials).
//  6. go-redis reconnects a subscription by itself after a network error;
//     the bus sees the new confirmation, flushes (messages sent meanwhile
//     are gone) and starts the sequence numbers afresh. When a Cluster slot
//     migrates, Redis 7 ends the subscriptions of its shard channels; the
//     bus subscribes again, which reaches the slot's new owner, and flushes.
//  7. A message on our channels that fails to decode counts as a loss:
//     every cache is flushed.
//  8. Keys messages call the invalidate callbacks of their namespace only;
//     flush messages (PublishFlush) the flush callbacks of their namespace.
//
// # Wire versions and rolling upgrades
//
// Every message carries a version byte, and is written with the lowest
// version that can express it: keys, flush and heartbeat messages are
// version 1, announcements version 2, lease notices version 3. A bus
// flushes on any message it cannot decode on its data and announcement
// channels, so a node never silently ignores an invalidation it does not
// understand. Lease notices travel only on the inboxes, which carry no
// invalidation: older releases do not subscribe to them (so they never see
// a notice), and a newer notice this bus cannot read is counted as a
// decode error and ignored. Mixing releases with and without lease notices
// is safe: waiters on a node of the older release, and waiters on a lease
// held by one, poll as before. The rule for future changes: new kinds or fields get a
// new version, and the kinds older nodes know keep their old encoding.
// Upgrading from a release before announcements (wire version 1 only):
// old nodes drop announcements (counted as decode errors) but still apply
// keys and flush messages; they flush once for each new node, which sends
// no periodic heartbeats (it looks silent to them). Finish the rollout
// within a few minutes.
//
// # Configuration errors
//
// New checks that Redis lets the bus subscribe and publish before starting:
// a wrong password (WRONGPASS), an ACL user without SUBSCRIBE/SSUBSCRIBE,
// PUBLISH/SPUBLISH or the channel pattern &prefix:* (NOPERM), or a server
// without SSUBSCRIBE when sharded pub/sub was asked for, fail New with an
// error wrapping ErrRedisRefused that says which. On a Cluster without
// SSUBSCRIBE (Redis 6) and the default transport, the bus falls back to
// classic pub/sub and logs a warning. The bus logs to slog.Default()
// unless WithLogger says otherwise.
//
// # The staleness bound
//
// With a cache that evicts on invalidate and flush and guards its fills by
// generation (tiered with package local), a node serves a value at most
//
//	min(LocalTTL, D)
//
// after the write that replaced it returned, where D, the loss detection
// time (Bus.DetectionTime), is
//
//	max(HeartbeatInterval + 2 × LagLimit, SilenceIntervals × HeartbeatInterval) + HeartbeatInterval/4
//
// (3.25 s with the defaults), plus a round trip:
//
//   - a lost message is seen at its origin's next announcement (within one
//     interval) plus one lag limit, or at its next message or heartbeat on
//     the channel;
//   - a message Redis did not accept (Publish returns an error, while the
//     L2 write it follows stands) has still used its sequence number, so it
//     shows as a gap the same way;
//   - a delayed message: delay over the lag limit makes the bus unhealthy
//     (its own announcements are late too) or the announced number overdue;
//   - a partitioned node, or one whose Redis is down: its own
//     announcements stop coming back, it turns unhealthy within one
//     interval plus one lag limit and then keeps every L1 entry under D;
//   - a node that died or lost Redis: its silence is seen by the others.
//
// In the normal case the key is dropped within a millisecond on a LAN.
//
// # Metrics
//
// The bus reports OpenTelemetry metrics under the scope ScopeName, to the
// meter provider of WithMeterProvider (default: the global provider at
// New). The counters are the atomics behind Stats, read by one asynchronous
// callback at collection time (registered by New, unregistered by Close);
// the lag histogram is recorded on the receive path. The counters count
// from New; several buses on one provider add up.
//
//	tiercache.invalidation.messages.sent      {message}         tiercache.message.kind = keys | flush | heartbeat | announcement
//	tiercache.invalidation.messages.received  {message}         tiercache.message.kind (from other buses only)
//	tiercache.invalidation.keys.sent          {key}
//	tiercache.invalidation.keys.invalidated   {key}             keys of a namespace with a subscriber
//	tiercache.invalidation.gaps               {gap}
//	tiercache.invalidation.flushes            {flush}           tiercache.flush.reason = gap | resubscribe | silence | remote | unhealthy | undecodable
//	tiercache.invalidation.decode_errors      {message}
//	tiercache.invalidation.publish_errors     {message}         messages and heartbeats
//	tiercache.invalidation.resubscriptions    {resubscription}
//	tiercache.invalidation.lag                s                 histogram, buckets 50 µs to 5 s (those of Stats.Lag)
//
// Counters and their semantics match the fields of Stats (flushes counts
// flush requests, which may share one flush). Lag is the publish-to-evict
// lag of a keys message: from the sender building it to the invalidate
// callbacks having returned here; it spans two hosts' clocks. Publish
// itself touches no instrument. The bus makes no spans.
//
// # Concurrency and lifetime
//
// A Bus is safe for concurrent use. It owns 2 goroutines per channel plus
// an announcer, a watchdog, a resetter and a lease-notice sender, all
// stopped and waited for by Close, which also closes the bus's
// subscriptions (their connections). Every call the bus makes to Redis runs
// under a deadline (the publish timeout; connecting a subscription too), and
// a subscription's reads can be cut short by closing it, so Close returns
// within max(PublishTimeout, LeaveTimeout),
// 500 ms with the defaults, whatever Redis does, on a client with
// ContextTimeoutEnabled. Callbacks run on the subscriber goroutines and
// must be quick.
package invalidation
