package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Native compare-and-set: where the server has SET IFEQ (Redis 8.4+,
// Valkey 8.1+) and DELEX (Redis 8.4+) or DELIFEQ (Valkey 9.0+), fills and
// lease releases use them instead of the Lua scripts (chooseSwap,
// chooseRelease). These commands compare the whole value, while the store
// compares the version id inside the envelope; so the store reads the
// value (GET), checks the version itself, and sends the conditional
// command with the bytes it read. The command applies only if the key
// still holds exactly those bytes, hence still the version: the same
// outcome as the script, at the same instant. If the value changed in
// between (a lease renewed: same version, new expiry), it reads again.
//
// This path is not run against a real Redis 8.4 or Valkey server by the
// tests here (the harness runs Redis 7.0); the choice of command is a pure
// function with a unit test, and the probe's "no" on Redis 7.0 is tested.

// nativeRounds bounds the GET-then-conditional rounds of one call: each
// extra round means the value changed under the same version (a renewal),
// which happens at most once per lease renewal interval.
const nativeRounds = 4

// errContended is returned when every round found the value changed.
var errContended = errors.New("remote: the value changed under the same version on every attempt")

// holds reports whether raw is an envelope of this format whose version
// id is version: what the scripts' holdsVersion tests.
func holds(raw []byte, version uint64) bool {
	return len(raw) >= headerSize && raw[0] == magic && raw[1] == formatVersion &&
		bytes.Equal(raw[versionOffset:headerSize], tokenBytes(version))
}

// swapNative is CompareAndSwap by GET and SET IFEQ.
func (s *Store) swapNative(ctx context.Context, key string, version uint64, b []byte, px time.Duration) (bool, error) {
	for range nativeRounds {
		raw, err := s.client.Get(ctx, key).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			return false, nil
		case err != nil:
			return false, err
		case !holds(raw, version):
			return false, nil
		}
		cmd := redis.NewStatusCmd(ctx, "SET", key, b, "IFEQ", raw, "PX", px.Milliseconds())
		_ = s.client.Process(ctx, cmd)
		switch err := cmd.Err(); {
		case err == nil:
			return true, nil
		case !errors.Is(err, redis.Nil):
			return false, err
		}
		// Nil: the value changed since the GET; look again.
	}
	return false, errContended
}

// deleteNative is CompareAndDelete by GET and DELEX IFEQ or DELIFEQ.
func (s *Store) deleteNative(ctx context.Context, key string, version uint64, m casMethod) (bool, error) {
	for range nativeRounds {
		raw, err := s.client.Get(ctx, key).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			return false, nil
		case err != nil:
			return false, err
		case !holds(raw, version):
			return false, nil
		}
		cmd := redis.NewIntCmd(ctx, "DELEX", key, "IFEQ", raw)
		if m == byDelIfEq {
			cmd = redis.NewIntCmd(ctx, "DELIFEQ", key, raw)
		}
		_ = s.client.Process(ctx, cmd)
		n, err := cmd.Result()
		if err != nil {
			return false, err
		}
		if n == 1 {
			return true, nil
		}
		// 0: the value changed since the GET; look again.
	}
	return false, errContended
}

// deleteUnscripted is CompareAndDelete by GET then DEL, for a user whose
// scripting was revoked: not atomic (see CompareAndDelete).
func (s *Store) deleteUnscripted(ctx context.Context, key string, version uint64) (bool, error) {
	raw, err := s.client.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, err
	case !holds(raw, version):
		return false, nil
	}
	if err := s.client.Del(ctx, key).Err(); err != nil {
		return false, err
	}
	s.unscripted.Add(1)
	return true, nil
}

// isScriptRefused reports whether err is Redis refusing EVAL or EVALSHA
// by ACL.
func isScriptRefused(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) || !strings.HasPrefix(re.Error(), "NOPERM") {
		return false
	}
	cmd := refusedCommand(re.Error())
	return cmd == "EVAL" || cmd == "EVALSHA"
}

// permissionError describes a refusal by Redis (isPermission) met doing
// what: NOPERM with the command it names, or refused credentials.
func permissionError(what string, err error) error {
	msg := err.Error()
	const see = "docs/deploying.md, ACL, lists every command tiercache needs"
	switch {
	case strings.HasPrefix(msg, "NOPERM"):
		if cmd := refusedCommand(msg); cmd != "" {
			return fmt.Errorf("remote: %s: %w: NOPERM, the Redis user may not run %s (%s): %w", what, ErrPermission, cmd, see, err)
		}
		return fmt.Errorf("remote: %s: %w: NOPERM, the Redis user may not access the key (grant the cache's key pattern; %s): %w",
			what, ErrPermission, see, err)
	default:
		return fmt.Errorf("remote: %s: %w: Redis refused the credentials (%s): %w", what, ErrPermission, firstWord(err), err)
	}
}
