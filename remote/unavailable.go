package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable marks errors that say the shard serving a key is
// unavailable: connection errors (refused, reset, closed, I/O timeouts),
// an exhausted connection pool, and the replies CLUSTERDOWN, LOADING,
// TRYAGAIN, MASTERDOWN and READONLY (a primary demoted by a failover). Such
// errors match errors.Is(err, ErrUnavailable) and have a method
// Unavailable() bool returning true, which tiered's circuit breakers detect
// structurally. Error replies that prove the server is up (NOPERM,
// WRONGPASS, WRONGTYPE, script errors), context errors and the store's own
// validation errors are not marked.
var ErrUnavailable = errors.New("remote: shard unavailable")

// unavailableError wraps an error that means the shard is unavailable.
type unavailableError struct{ err error }

func (e unavailableError) Error() string { return e.err.Error() }

func (e unavailableError) Unwrap() []error { return []error{e.err, ErrUnavailable} }

// Unavailable reports true: the shard serving the key is unavailable.
func (e unavailableError) Unavailable() bool { return true }

// isUnavailable reports whether err, returned by go-redis, means the shard
// is unavailable.
func isUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return redis.IsClusterDownError(err) || redis.IsLoadingError(err) || redis.IsTryAgainError(err) ||
			redis.IsMasterDownError(err) || redis.IsReadOnlyError(err)
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return true
	}
	return false
}

// needsReload reports whether err suggests the client's Cluster slot map is
// out of date: a connection error (the primary may have been replaced), a
// MOVED or ASK go-redis gave up following, READONLY or CLUSTERDOWN.
func needsReload(err error) bool {
	if _, ok := redis.IsMovedError(err); ok {
		return true
	}
	if _, ok := redis.IsAskError(err); ok {
		return true
	}
	return isUnavailable(err)
}

// DefaultReloadInterval is the least time between two Cluster slot map
// reloads the store asks for after errors.
const DefaultReloadInterval = 500 * time.Millisecond

// fail classifies an error of a Redis call on key: it asks a Cluster client
// to reload its slot map when err suggests a failover (at most once per
// reload interval), and marks unavailability. err is already wrapped with
// what failed.
func (s *Store) fail(err error) error {
	if err == nil {
		return nil
	}
	if s.reloader != nil && needsReload(err) {
		s.maybeReload()
	}
	if isUnavailable(err) {
		return unavailableError{err}
	}
	return err
}

// maybeReload asks the Cluster client to reload its slot map, unless it did
// less than the reload interval ago.
func (s *Store) maybeReload() {
	now := time.Now().UnixNano()
	last := s.lastReload.Load()
	if now-last < int64(s.reloadEvery) || !s.lastReload.CompareAndSwap(last, now) {
		return
	}
	s.reloads.Add(1)
	s.shards.forget()
	// ReloadState reloads in the background and does not use the context.
	s.reloader.ReloadState(context.Background())
}

// isPermission reports whether err is an ACL or authentication refusal,
// which no retry fixes.
func isPermission(err error) bool {
	msg := ""
	var re redis.Error
	if errors.As(err, &re) {
		msg = re.Error()
	}
	return strings.HasPrefix(msg, "NOPERM") || strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH")
}

// wrap describes a failed Redis call (format and args say what failed) and
// classifies err with fail; a permission refusal also matches
// ErrPermission.
func (s *Store) wrap(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if isPermission(err) {
		return permissionError(what, err)
	}
	return s.fail(fmt.Errorf("remote: %s: %w", what, err))
}

// unstorableError wraps ErrValueTooLarge: the value can never be stored,
// so retrying is pointless. tiered detects the method Unstorable() bool
// structurally and leaves a short marker instead of the lease, so other
// nodes load for themselves instead of waiting.
type unstorableError struct{ err error }

func (e unstorableError) Error() string { return e.err.Error() }

func (e unstorableError) Unwrap() error { return e.err }

// Unstorable reports true: the value can never be stored.
func (e unstorableError) Unstorable() bool { return true }
