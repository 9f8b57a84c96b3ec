package remote

import (
	"context"
	"errors"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
)

// ErrWriteTooLate is returned for a fenced write that reached Redis after
// its deadline (Entry.Deadline, by the server's clock): Redis refused it,
// so nothing was written.
var ErrWriteTooLate = errors.New("remote: write reached Redis past its deadline; not applied")

// fencedSet is SET refused once the server's clock is past the write's
// deadline (ARGV[2], Unix milliseconds): a write delayed in the network
// (a partition that heals, a frozen client) must not land after a later
// write or delete of the key. It returns 1 when it wrote, 0 when refused.
var fencedSet = redis.NewScript(fencedSetSrc)

const fencedSetSrc = `
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
`

// queueSet adds the write of b under key (entry e) to pipe: a fenced SET
// when e has a deadline, else a plain SET. The command's outcome is read
// with setResult.
func queueSet(ctx context.Context, pipe redis.Pipeliner, key string, b []byte, e driver.Entry) redis.Cmder {
	if e.Deadline.IsZero() {
		return pipe.Set(ctx, key, b, ttl(e.ExpiresAt))
	}
	// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT, and
	// Redis finds the script it compiled before by the body's digest.
	return pipe.Eval(ctx, fencedSetSrc, []string{key}, b, e.Deadline.UnixMilli(), ttl(e.ExpiresAt).Milliseconds())
}

// setResult is the outcome of a write queued by queueSet.
func setResult(cmd redis.Cmder) error {
	if err := cmd.Err(); err != nil {
		return err
	}
	if c, ok := cmd.(*redis.Cmd); ok {
		if n, err := c.Int(); err != nil || n != 1 {
			return ErrWriteTooLate
		}
	}
	return nil
}

// set writes b under key (entry e), fenced when e has a deadline.
func (s *Store) set(ctx context.Context, key string, b []byte, e driver.Entry) error {
	if e.Deadline.IsZero() {
		return s.client.Set(ctx, key, b, ttl(e.ExpiresAt)).Err()
	}
	n, err := fencedSet.Run(ctx, s.client, []string{key}, b, e.Deadline.UnixMilli(), ttl(e.ExpiresAt).Milliseconds()).Int()
	if err != nil {
		return err
	}
	if n != 1 {
		return ErrWriteTooLate
	}
	return nil
}
