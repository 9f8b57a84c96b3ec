package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
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
// structurally. A CLUSTERDOWN reply (and, for a second after one, a
// Cluster call that ran out of time) also has a method Answered() bool
// returning true (driver.AnsweredError): the whole Cluster refuses while
// another shard fails over, so tiered does not count it against the key's
// shard; a refusal lasting over 5 s loses that mark. Error replies that
// prove the server is up (NOPERM, WRONGPASS, WRONGTYPE, script errors),
// context errors and the store's own validation errors are not marked.
var ErrUnavailable = errors.New("remote: shard unavailable")

// unavailableError wraps an error that means the shard is unavailable.
type unavailableError struct{ err error }

func (e unavailableError) Error() string { return e.err.Error() }

func (e unavailableError) Unwrap() []error { return []error{e.err, ErrUnavailable} }

// Unavailable reports true: the shard serving the key is unavailable.
func (e unavailableError) Unavailable() bool { return true }

// clusterDownError wraps a CLUSTERDOWN reply, or a call that ran out of
// time while the Cluster was refusing so (see Store.fail). It matches
// ErrUnavailable only for a reply (the caller cannot use the Cluster), and
// carries the answered mark: the shard's node is up, so tiered does not
// count it against that shard's breaker.
type clusterDownError struct {
	err   error
	reply bool // a CLUSTERDOWN reply, not a timeout
}

func (e clusterDownError) Error() string { return e.err.Error() }

func (e clusterDownError) Unwrap() []error {
	if e.reply {
		return []error{e.err, ErrUnavailable}
	}
	return []error{e.err}
}

// Unavailable reports true for a CLUSTERDOWN reply: the Cluster refuses
// the key. Answered takes precedence for tiered's breakers.
func (e clusterDownError) Unavailable() bool { return e.reply }

// Answered reports true: the key's node answered (the whole Cluster
// refuses), so the failure says nothing about that node.
func (e clusterDownError) Answered() bool { return true }

// A Cluster that Redis runs with cluster-require-full-coverage yes (its
// default) answers CLUSTERDOWN for every key, on every primary, from the
// moment one primary is marked failed until its replica is promoted: about
// a second. go-redis retries such replies with backoff, so most calls of
// that second end at their deadline instead. For clusterDownHold after the
// store last saw CLUSTERDOWN, a call that ran out of time is taken to have
// been refused so too, unless the refusals have lasted clusterDownGrace:
// then the Cluster is down for good (a primary without a replica died) and
// its errors count as unavailability again, so that tiered's breakers
// open and calls fail fast.
const (
	clusterDownHold  = time.Second
	clusterDownGrace = 5 * time.Second
)

// clusterDown is the store's record of the CLUSTERDOWN replies it saw.
// Updates race benignly: a lost update moves a bound by one call.
type clusterDown struct {
	since atomic.Int64 // unix nanos of the first reply of the current refusal
	last  atomic.Int64 // unix nanos of the latest reply
}

// saw records a CLUSTERDOWN reply at now and reports whether the refusal
// is still young enough (clusterDownGrace) to be a failover.
func (d *clusterDown) saw(now int64) bool {
	if last := d.last.Load(); last == 0 || now-last > int64(clusterDownHold) {
		d.since.Store(now)
	}
	d.last.Store(now)
	return now-d.since.Load() < int64(clusterDownGrace)
}

// refusing reports whether the Cluster answered CLUSTERDOWN within
// clusterDownHold of now, in a refusal younger than clusterDownGrace.
func (d *clusterDown) refusing(now int64) bool {
	last := d.last.Load()
	return last != 0 && now-last <= int64(clusterDownHold) && now-d.since.Load() < int64(clusterDownGrace)
}

// isDialError reports whether err is a failure to connect: the node, not
// the Cluster, is the problem.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

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
// reload interval), marks a Cluster's refusal of every key (CLUSTERDOWN,
// and calls that ran out of time meanwhile; see clusterDownHold) as
// answered, and marks unavailability. err is already wrapped with what
// failed.
func (s *Store) fail(err error) error {
	if err == nil {
		return nil
	}
	if s.reloader != nil && needsReload(err) {
		s.maybeReload()
	}
	if s.clusterClient != nil {
		now := time.Now().UnixNano()
		switch {
		case redis.IsClusterDownError(err):
			if s.down.saw(now) {
				return clusterDownError{err: err, reply: true}
			}
		case errors.Is(err, context.DeadlineExceeded) && !isDialError(err) && s.down.refusing(now):
			return clusterDownError{err: err}
		}
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
