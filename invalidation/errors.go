package invalidation

import "errors"

// Errors returned by the package. They are wrapped with details; match them
// with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Bus.
	ErrClosed = errors.New("invalidation: bus closed")
	// ErrNilClient is returned by New when the client is nil.
	ErrNilClient = errors.New("invalidation: nil client")
	// ErrInvalidOption is returned by New for an option out of range.
	ErrInvalidOption = errors.New("invalidation: invalid option")
	// ErrNamespace is returned for an empty namespace or one longer than
	// MaxNamespaceLen.
	ErrNamespace = errors.New("invalidation: invalid namespace")
	// ErrKeyTooLong is returned by Publish for a key longer than MaxKeyLen.
	ErrKeyTooLong = errors.New("invalidation: key too long")
	// ErrRedisRefused is returned by New when Redis refuses the bus:
	// a wrong password, an ACL user without the permissions the bus needs
	// (SUBSCRIBE or SSUBSCRIBE, PUBLISH or SPUBLISH, and its channel
	// pattern), or a server without sharded pub/sub when it was asked for.
	// The message says which.
	ErrRedisRefused = errors.New("invalidation: Redis refused the bus")
	// ErrPublish wraps the Redis error of a failed PUBLISH or SPUBLISH.
	ErrPublish = errors.New("invalidation: publish failed")

	// ErrMalformed is returned by the decoder for input that is not a valid
	// message.
	ErrMalformed = errors.New("invalidation: malformed message")
	// ErrTooLarge is returned by the decoder for input longer than
	// MaxMessageSize.
	ErrTooLarge = errors.New("invalidation: message too large")
	// ErrVersion is returned by the decoder for a message of a wire format
	// version it does not know.
	ErrVersion = errors.New("invalidation: unsupported message version")
)
