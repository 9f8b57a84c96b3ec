package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Fenced writes (issue 19): an unconditional L2 write (Set, SetMany, the
// carried Set) carries a deadline, its remote timeout's end plus the clock
// skew allowance (WithClockSkew), and Redis refuses it once its own clock
// is past that deadline. A write whose outcome is unknown (a timeout, a
// connection lost with the write in flight) may still land until then; so
// once the deadline has passed, the cache deletes the key if, and only if,
// it still holds that very write (a compare-and-delete on the write's
// version, so a later write by anyone is never touched), and tells the
// other nodes. A write that returned success is never undone.

// fence sets e's deadline from the context of its L2 call: the end of the
// call plus the clock skew allowance. A call without a deadline (remote
// timeout off and none from the caller) writes unfenced.
func (c *Cache[V]) fence(rctx context.Context, e *driver.Entry) {
	if dl, ok := rctx.Deadline(); ok {
		e.Deadline = dl.Add(c.cfg.clockSkew)
	}
}

// unknownOutcome reports whether a failed write may still have reached
// Redis: it was sent and no answer came (a timeout, a cancelled call, a
// lost connection). A refusal by the breaker or by Redis itself (an error
// reply) is a known outcome: nothing was written.
func unknownOutcome(err error) bool {
	if err == nil || errors.Is(err, ErrCircuitOpen) {
		return false
	}
	return isUnavailable(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, errRemoteTimeout)
}

// compensate removes a write of key (entry e) whose outcome is unknown, in
// the background: once e's deadline has passed by this node's clock (after
// that Redis refuses it, within the skew allowance), it deletes key if key
// still holds e (by version) and then publishes its invalidation. It
// retries every remote timeout (at least 100 ms) while the shard does not
// answer, until the cache closes or RemoteTTL has passed (the write would
// have expired). An unfenced write (no deadline) is compensated one remote
// timeout after the call.
func (c *Cache[V]) compensate(key string, e driver.Entry) {
	if c.l2 == nil {
		return
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	c.stats.writesCompensating.Add(1)
	go func() {
		defer c.wg.Done()
		at := e.Deadline
		if at.IsZero() {
			at = c.cfg.clock.Now().Add(max(c.cfg.remoteTimeout, 100*time.Millisecond))
		}
		giveUp := e.ExpiresAt
		retry := max(c.cfg.remoteTimeout, 100*time.Millisecond)
		for {
			t := c.cfg.clock.NewTimer(at.Sub(c.cfg.clock.Now()))
			select {
			case <-c.closing.Done():
				t.Stop()
				return
			case <-t.C():
			}
			ctx, cancel := c.remoteCtx(c.closing)
			deleted, err := c.l2.CompareAndDelete(ctx, c.prefix+key, e.Version)
			cancel()
			switch {
			case err == nil && deleted:
				c.stats.writesCompensated.Add(1)
				c.invalidateLocal(key)
				if perr := c.publish(c.closing, []string{key}); perr != nil {
					c.report(c.closing, perr)
				}
				return
			case err == nil:
				return // the write never landed, or a later one replaced it
			}
			if c.closing.Err() != nil {
				return
			}
			c.report(c.closing, fmt.Errorf("tiered: removing the write of %q in cache %q whose outcome is unknown (retrying): %w", key, c.name, c.remoteErr("compare-and-delete", key, err)))
			at = c.cfg.clock.Now().Add(retry)
			if !giveUp.IsZero() && at.After(giveUp) {
				return
			}
		}
	}()
}
