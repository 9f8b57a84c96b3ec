package driver

import (
	"strconv"
	"time"
)

// Kind is the kind of an Entry. The values are stored in L2 (package
// remote writes them in its envelope): they never change meaning.
type Kind uint8

// The kinds of Entry.
const (
	KindNone     Kind = 0 // no entry under the key
	KindValue    Kind = 1 // a value: Payload holds the encoded V
	KindNotFound Kind = 2 // a cached "not found"
	KindLease    Kind = 3 // a load lease: a loader holds the key; Version is its token
	KindFailed   Kind = 4 // the load under a lease failed; Payload is the message
	// KindTagged is a value that belongs to tags: Payload starts with the
	// cache's tag header (the tags and their generations), then the value.
	KindTagged Kind = 5
	// KindUnstorable replaces a lease whose value L2 can never store (too
	// large): other nodes load for themselves while it lasts. Payload is
	// the error message.
	KindUnstorable Kind = 6
)

var kindNames = [...]string{"none", "value", "not-found", "lease", "failed", "tagged", "unstorable"}

// String returns the kind's name ("value", "lease", ...).
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// IsValue reports whether k is a kind that answers a read: a value, a
// tagged value or a cached "not found".
func (k Kind) IsValue() bool {
	return k == KindValue || k == KindTagged || k == KindNotFound
}

// Entry is what an L2 store holds under a key.
type Entry struct {
	// Kind says what the entry is; KindNone on a miss.
	Kind Kind
	// Payload is the value encoded with the store's codec (KindValue,
	// after the tag header for KindTagged), or the error message of a
	// failed load (KindFailed, KindUnstorable).
	Payload []byte
	// ExpiresAt is the absolute expiry of the entry.
	ExpiresAt time.Time
	// LoadTime is how long the load that produced the entry took.
	LoadTime time.Duration
	// Version identifies the write; random per write. For a lease it is the
	// lease token, and a failed load keeps the token of its lease.
	Version uint64
	// Deadline, when set, fences an unconditional write (Set, SetMany,
	// SetAndPublish): the store must not apply it once the server's own
	// clock is past Deadline, so that a write delayed in the network
	// cannot land after a later write or delete of the key. It is not
	// stored.
	Deadline time.Time
}
