package tiered

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Errors. Match them with errors.Is; the cache wraps them with context.
var (
	// ErrNotFound is returned by a loader for an absent row and by GetOrLoad
	// for a key known to be absent. It is cached (negative caching).
	ErrNotFound = errors.New("tiered: not found")
	// ErrClosed is returned by every method of a closed Cache.
	ErrClosed = errors.New("tiered: cache closed")
	// ErrEmptyKey is returned for an empty key.
	ErrEmptyKey = errors.New("tiered: empty key")
	// ErrReservedKey is returned for a key that begins with "\x00": such
	// keys are reserved for the cache's own L2 entries.
	ErrReservedKey = errors.New("tiered: reserved key")
	// ErrInvalidOption is returned by New for an option it cannot use.
	ErrInvalidOption = errors.New("tiered: invalid option")
	// ErrRemote wraps every failure of the L2 store.
	ErrRemote = errors.New("tiered: L2 store failed")
	// ErrInvalidation is returned by Set and Delete when the change reached
	// L2 but the invalidation could not be published to the other nodes.
	// The L2 change stands; retry the call (it is idempotent) to broadcast.
	ErrInvalidation = errors.New("tiered: invalidation not published")
	// ErrLoaderPanic wraps a panic of a loader; the message carries the
	// panic value and the stack.
	ErrLoaderPanic = errors.New("tiered: loader panicked")
	// ErrLoadFailed is returned to callers that waited for another node's
	// load when that load failed; the message carries the loader's error.
	ErrLoadFailed = errors.New("tiered: load failed on another node")
	// ErrCodec wraps a failure to encode or decode a value for L2.
	ErrCodec = errors.New("tiered: codec failed")
)

// KeyErrors holds the per-key failures of GetOrLoadMany, by key. It unwraps
// to the individual errors, so errors.Is(err, ErrX) reports whether any key
// failed with ErrX.
type KeyErrors map[string]error

// Error lists the failed keys, sorted.
func (e KeyErrors) Error() string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "tiered: %d keys failed", len(e))
	for i, k := range keys {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(keys)-i)
			break
		}
		fmt.Fprintf(&b, "; %q: %v", k, e[k])
	}
	return b.String()
}

// Unwrap returns the per-key errors.
func (e KeyErrors) Unwrap() []error {
	out := make([]error, 0, len(e))
	for _, err := range e {
		out = append(out, err)
	}
	return out
}
