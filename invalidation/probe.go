package invalidation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// probe checks, before New starts anything, that Redis lets the bus
// subscribe and publish: configuration errors (a wrong password, a missing
// ACL permission, a command the server does not know) fail New loudly
// instead of leaving a bus that silently delivers nothing. On a Cluster
// whose servers do not know SSUBSCRIBE (Redis 6), a bus left on the default
// transport falls back to classic pub/sub, with a warning; one told to use
// sharded pub/sub (WithShardedPubSub(true)) fails. Network errors are not
// configuration errors: they are logged, and the bus keeps trying.
func (b *Bus) probe(isCluster bool) error {
	timeout := b.cfg.startTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := b.probeSubscribe(ctx)
	if err != nil && b.sharded && b.cfg.sharded == nil && isUnknownCommand(err) {
		b.log.Warn("invalidation: the server does not know SSUBSCRIBE (Redis 6?); using classic pub/sub (PUBLISH is broadcast to every Cluster node)")
		b.sharded = false
		b.setChannels()
		err = b.probeSubscribe(ctx)
	}
	if err == nil {
		err = b.probePublish(ctx)
	}
	switch {
	case err == nil:
		return nil
	case isRedisError(err):
		return b.explain(err)
	default:
		b.log.Warn("invalidation: Redis not reachable at start; retrying in the background", "error", err)
		return nil
	}
}

func (b *Bus) subscribeCommand() string {
	if b.sharded {
		return "SSUBSCRIBE"
	}
	return "SUBSCRIBE"
}

func (b *Bus) publishCommand() string {
	if b.sharded {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// probeSubscribe subscribes to the first channel and the announcement
// channel and waits for the confirmation.
func (b *Bus) probeSubscribe(ctx context.Context) error {
	var ps *redis.PubSub
	if b.sharded {
		ps = b.client.SSubscribe(ctx, b.channels[0], b.announce)
	} else {
		ps = b.client.Subscribe(ctx, b.channels[0], b.announce)
	}
	defer func() {
		// Close can block while go-redis redials an unreachable server:
		// never let that hold New.
		done := make(chan struct{})
		go func() { _ = ps.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
		}
	}()
	_, err := ps.Receive(ctx)
	if err != nil {
		return &probeError{op: b.subscribeCommand(), err: err}
	}
	return nil
}

// probePublish publishes a heartbeat with sequence number 0 on the first
// channel: running buses take it as a first contact at the origin's
// beginning, which is no gap.
func (b *Bus) probePublish(ctx context.Context) error {
	m := message{Origin: b.origin, Kind: kindHeartbeat, PublishedAt: b.clock.Now().UnixNano()}
	if err := b.publishCmd(ctx, b.client, b.channels[0], appendMessage(nil, &m)).Err(); err != nil {
		return &probeError{op: b.publishCommand(), err: err}
	}
	return nil
}

type probeError struct {
	op  string
	err error
}

func (e *probeError) Error() string { return e.op + ": " + e.err.Error() }
func (e *probeError) Unwrap() error { return e.err }

// refusedCommand returns the command a NOPERM reply names ("... no
// permissions to run the 'cluster|slots' command"), or "".
func refusedCommand(msg string) string {
	_, rest, ok := strings.Cut(msg, "to run the '")
	if !ok {
		return ""
	}
	cmd, _, ok := strings.Cut(rest, "'")
	if !ok {
		return ""
	}
	return strings.ToLower(cmd)
}

func isUnknownCommand(err error) bool {
	return isRedisError(err) && strings.Contains(strings.ToLower(err.Error()), "unknown command")
}

// explain turns a Redis error reply met by the probe into an error naming
// the problem.
func (b *Bus) explain(err error) error {
	op := "Redis"
	var pe *probeError
	if errors.As(err, &pe) {
		op = pe.op
	}
	msg := err.Error()
	pattern := b.cfg.prefix + ":*"
	switch {
	case strings.Contains(msg, "WRONGPASS"):
		return fmt.Errorf("%w: authentication failed (WRONGPASS): check the client's username and password: %w", ErrRedisRefused, err)
	case strings.Contains(msg, "NOAUTH"):
		return fmt.Errorf("%w: the server requires a password (NOAUTH): %w", ErrRedisRefused, err)
	case strings.Contains(msg, "NOPERM") && strings.Contains(msg, "channel"):
		return fmt.Errorf("%w: the Redis user may not use the bus's channels (NOPERM on %s): grant the channel pattern &%s: %w",
			ErrRedisRefused, op, pattern, err)
	case strings.Contains(msg, "NOPERM"):
		if cmd := refusedCommand(msg); cmd != "" && cmd != strings.ToLower(op) {
			// Another command on the way, e.g. CLUSTER SLOTS, which a
			// Cluster client runs to find the channel's node.
			return fmt.Errorf("%w: the Redis user may not run %s, which %s needs (NOPERM): grant +%s: %w",
				ErrRedisRefused, cmd, op, cmd, err)
		}
		return fmt.Errorf("%w: the Redis user may not run %s (NOPERM): grant +%s (or +@pubsub) and the channel pattern &%s: %w",
			ErrRedisRefused, op, strings.ToLower(op), pattern, err)
	case isUnknownCommand(err) && b.sharded:
		return fmt.Errorf("%w: the server does not know %s (sharded pub/sub needs Redis 7): use WithShardedPubSub(false): %w",
			ErrRedisRefused, op, err)
	default:
		return fmt.Errorf("%w: %s refused: %w", ErrRedisRefused, op, err)
	}
}
