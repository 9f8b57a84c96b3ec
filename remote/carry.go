package remote

import (
	"context"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
)

// Carrier names the go-redis client the store was created with
// (driver.NewCarrier of it). A bus on the same client can have its
// invalidation of a write carried in the write's round trip (see
// SetAndPublish and driver.PublishCarrier).
func (s *Store) Carrier() driver.Carrier { return driver.NewCarrier(s.client) }

// SetAndPublish is Set followed, on the same connection and in the same
// round trip, by command (PUBLISH or SPUBLISH) with channel and payload:
// Redis runs the commands of a connection in order, so the message reaches
// subscribers only after the write. On a Cluster both go to the primary
// owning key's slot (the bus chose a channel that node serves); a stale
// slot map fails them with MOVED, and the caller writes again the usual
// way. A nil payload sends the SET alone. setErr is the write's outcome,
// pubErr the message's.
func (s *Store) SetAndPublish(ctx context.Context, key string, e driver.Entry, command, channel string, payload []byte) (setErr, pubErr error) {
	if err := s.checkKey(key); err != nil {
		return err, nil
	}
	b, err := s.encode(key, e)
	if err != nil {
		return err, nil
	}
	return s.andPublish(ctx, key, "SET", func(pipe redis.Pipeliner) redis.Cmder {
		return queueSet(ctx, pipe, key, b, e)
	}, command, channel, payload)
}

// DeleteAndPublish is Delete of one key followed, on the same connection
// and in the same round trip, by command with channel and payload, as
// SetAndPublish does for Set.
func (s *Store) DeleteAndPublish(ctx context.Context, key string, command, channel string, payload []byte) (delErr, pubErr error) {
	if err := s.checkKey(key); err != nil {
		return err, nil
	}
	return s.andPublish(ctx, key, "DEL", func(pipe redis.Pipeliner) redis.Cmder {
		return pipe.Del(ctx, key)
	}, command, channel, payload)
}

// andPublish runs the write that queue adds to a pipeline on key's primary,
// then the message, in one round trip.
func (s *Store) andPublish(ctx context.Context, key, what string, queue func(redis.Pipeliner) redis.Cmder, command, channel string, payload []byte) (writeErr, pubErr error) {
	var pipe redis.Pipeliner
	if s.clusterClient != nil {
		node, err := s.clusterClient.MasterForKey(ctx, key)
		if err != nil {
			return s.wrap(err, "%s %q", what, key), nil
		}
		pipe = node.Pipeline()
	} else {
		pipe = s.client.Pipeline()
	}
	write := queue(pipe)
	var pub *redis.IntCmd
	if payload != nil {
		pub = redis.NewIntCmd(ctx, command, channel, payload)
		_ = pipe.Process(ctx, pub) // queued; the outcome is pub.Err()
	}
	_, _ = pipe.Exec(ctx) // per-command outcomes below
	if err := setResult(write); err != nil {
		writeErr = s.wrap(err, "%s %q", what, key)
	}
	if pub != nil {
		pubErr = pub.Err()
	}
	return writeErr, pubErr
}
