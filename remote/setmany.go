package remote

import (
	"context"
	"fmt"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
)

// SetMany writes entries[i] under keys[i] until its expiry, replacing
// whatever is there (a lease included), with one SET per key, all in one
// pipeline: go-redis sends each Cluster node the commands of its slots in
// one round trip. It returns one error per key, nil where the write
// succeeded; a key or value the store refuses (ErrKeyTooLong,
// ErrValueTooLarge) fails that key alone. keys and entries must have the
// same length (else every key fails).
func (s *Store) SetMany(ctx context.Context, keys []string, entries []driver.Entry) []error {
	errs := make([]error, len(keys))
	if len(keys) != len(entries) {
		err := fmt.Errorf("%w: SetMany of %d keys with %d entries", ErrInvalidOption, len(keys), len(entries))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	pipe := s.client.Pipeline()
	cmds := make([]redis.Cmder, len(keys))
	queued := 0
	for i, k := range keys {
		if err := s.checkKey(k); err != nil {
			errs[i] = err
			continue
		}
		b, err := s.encode(k, entries[i])
		if err != nil {
			errs[i] = err
			continue
		}
		cmds[i] = queueSet(ctx, pipe, k, b, entries[i])
		queued++
	}
	if queued == 0 {
		return errs
	}
	// Exec's error is the first failed command's; each command carries its
	// own, which is what the caller gets per key.
	_, _ = pipe.Exec(ctx)
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		if err := setResult(cmd); err != nil {
			errs[i] = s.wrap(err, "SET %q", keys[i])
		}
	}
	return errs
}
