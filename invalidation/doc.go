// Package invalidation is the cross-node L1 invalidation bus of tiercache,
// on Redis pub/sub (go-redis v9; standalone, Sentinel or Cluster).
//
// Every process creates one Bus and shares it between its caches, each
// under its own namespace:
//
//	bus, err := invalidation.New(rdb) // *redis.Client or *redis.ClusterClient
//	defer bus.Close()
//	unsubscribe, err := bus.Subscribe("users",
//		func(keys []string) { l1.Invalidate(keys...) }, l1.Flush)
//	err = bus.Publish(ctx, "users", []string{"42"}) // after the L2 write
//
// A Bus satisfies tiered.Bus structurally; it does not import tiered.
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
// (keys, flush or heartbeat), namespace, keys, and publish time. The decoder
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
//     goes out at once; writes that arrive while a round trip is in flight
//     share the next one.
//  3. Publish returns when Redis accepted every message carrying its keys,
//     or with the first error.
//  4. A publisher that has sent nothing for a heartbeat interval
//     (WithHeartbeatInterval, default 1 s) sends a heartbeat carrying the
//     channel's current sequence number. Close sends a last heartbeat
//     marked "leaving".
//
// # Receiving and loss detection
//
//  1. Each channel has one subscriber goroutine reading its subscription.
//     Messages from the bus itself are ignored (they come back too, and
//     show that the channel works).
//  2. Sequence numbers are tracked per (origin, channel). A keys or flush
//     message must carry the next number; a heartbeat must repeat the last
//     one. Anything ahead is a gap: messages were lost, and the bus calls
//     the flush callback of every cache. A lost last message is caught by
//     the next heartbeat, one interval later.
//  3. go-redis reconnects a subscription by itself after a network error;
//     the bus sees the new subscription confirmation, flushes (messages
//     sent meanwhile are gone) and starts the sequence numbers afresh. When
//     a Cluster slot migrates, Redis 7 ends the subscriptions of its shard
//     channels (an unsolicited sunsubscribe); the bus subscribes again,
//     which reaches the slot's new owner, and flushes.
//  4. The watchdog looks four times per interval: a channel that heard
//     nothing, not even the bus's own heartbeats, for WithSilenceIntervals
//     intervals (default 3) is flushed and subscribed again; another bus
//     silent that long causes one flush (it died, or lost Redis and may have
//     failed to publish), and its sequence number is kept, so that a gap
//     across the silence is still seen if it speaks again.
//  5. Keys messages call the invalidate callbacks of their namespace only;
//     flush messages (PublishFlush) the flush callbacks of their namespace.
//
// # The staleness bound
//
// With a cache that evicts on invalidate and flush and guards its fills by
// generation (tiered with package local), a node serves a value at most
//
//	min(LocalTTL, D)
//
// after the write that replaced it returned, where D, the loss detection
// time, is at most (SilenceIntervals + 1/4) × HeartbeatInterval plus a
// round trip (3.25 s with the defaults):
//
//   - a lost message is seen at the sender's next message or heartbeat on
//     the channel, within one interval;
//   - a message Redis did not accept (Publish returns an error, while the
//     L2 write it follows stands) has still used its sequence number, so it
//     shows as a gap the same way;
//   - a resubscription flushes as soon as it is confirmed;
//   - a dead subscription, or a sender that vanished, is caught by silence.
//
// In the normal case the key is dropped within a millisecond on a LAN.
// Known limit: the very first messages of a bus that a subscriber has not
// heard from yet cannot be checked for gaps; its later ones can.
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
//	tiercache.invalidation.messages.sent      {message}         tiercache.message.kind = keys | flush | heartbeat
//	tiercache.invalidation.messages.received  {message}         tiercache.message.kind (from other buses only)
//	tiercache.invalidation.keys.sent          {key}
//	tiercache.invalidation.keys.invalidated   {key}             keys of a namespace with a subscriber
//	tiercache.invalidation.gaps               {gap}
//	tiercache.invalidation.flushes            {flush}           tiercache.flush.reason = gap | resubscribe | silence | remote
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
// one watchdog, all stopped and waited for by Close. Callbacks run on the
// subscriber goroutines and must be quick.
package invalidation
