package invalidation

import (
	"encoding/binary"
	"fmt"
)

// Limits of the wire format. The decoder rejects any message over them, and
// the publisher never builds one: it splits a large batch into several
// messages instead. Publish rejects a namespace or key over its limit.
const (
	// MaxMessageSize is the largest encoded message, in bytes (256 KiB).
	MaxMessageSize = 256 << 10
	// MaxKeysPerMessage is the largest number of keys in one message.
	MaxKeysPerMessage = 4096
	// MaxKeyLen is the longest key, in bytes (16 KiB).
	MaxKeyLen = 16 << 10
	// MaxNamespaceLen is the longest namespace, in bytes.
	MaxNamespaceLen = 256
)

// Wire format (all integers big-endian, varints are canonical unsigned
// LEB128 as written by encoding/binary.AppendUvarint):
//
//	offset size  field
//	0      1     magic 'I' (0x49)
//	1      1     version (1 to 3, see below)
//	2      1     kind (1 keys, 2 flush, 3 heartbeat, 4 announcement,
//	             5 lease wait, 6 lease filled)
//	3      1     flags (bit 0: the origin is leaving; other bits zero)
//	4      8     origin node id (non-zero)
//	12     8     sequence number
//	20     8     publish time, Unix nanoseconds
//	28     var   namespace length, then the namespace bytes
//	...    var   key count, then per key: length, then the key bytes
//	...    var   announcement only: entry count, then per entry the channel
//	             index and that channel's sequence number (indexes rising)
//
// A keys message has a namespace and at least one key; a flush message has a
// namespace and no key; a heartbeat has neither. An announcement has no
// namespace; its "keys" are the namespaces its origin can write (each
// non-empty, at most MaxNamespaceLen bytes). A lease notice (wait or
// filled, see notify.go) has a namespace and at least one key, and a zero
// sequence number: notices are not numbered. The leaving flag goes on
// heartbeats and announcements. Nothing may follow the last field.
//
// Versions. A message is written with the lowest version that can express
// it: keys, flush and heartbeat messages are version 1 (unchanged since the
// first release, so older nodes still apply them), announcements version 2,
// lease notices version 3. A decoder rejects versions it does not know, and a bus treats a message on
// its channels that it cannot decode as a loss (it flushes). Rolling-upgrade
// rule: a release may add kinds or fields only under a new version number,
// and must keep writing the kinds older nodes know in their old version;
// then an old node never ignores an invalidation it cannot read, it flushes.
// Lease notices carry no invalidation, and travel only on the buses'
// inboxes (notify.go), which older nodes do not subscribe to: an older node
// never sees them, and a notice this node cannot read is ignored, not a
// loss.
const (
	wireMagic     = 'I'
	wireVersion   = 3 // the highest version this package reads
	headerSize    = 28
	flagLeaving   = 1 << 0
	maxSeqEntries = MaxShards
)

// msgKind is the kind of a bus message.
type msgKind uint8

// Kinds of message.
const (
	// kindKeys names keys of one namespace that changed.
	kindKeys msgKind = 1
	// kindFlush asks every node to flush the L1 of one namespace.
	kindFlush msgKind = 2
	// kindHeartbeat carries the sender's current sequence number on its
	// channel, one interval after its last message there, so a receiver
	// notices a lost last message.
	kindHeartbeat msgKind = 3
	// kindAnnounce is an origin's periodic announcement on the
	// announcement channel: the namespaces it can write and its sequence
	// number on every channel it has used.
	kindAnnounce msgKind = 4
	// kindLeaseWait says that the origin has callers waiting on the load
	// leases of keys of one namespace, held elsewhere (notify.go).
	kindLeaseWait msgKind = 5
	// kindLeaseFilled says that the origin resolved its load leases on
	// keys of one namespace: waiters should read them again.
	kindLeaseFilled msgKind = 6
)

func (k msgKind) String() string {
	switch k {
	case kindKeys:
		return "keys"
	case kindFlush:
		return "flush"
	case kindHeartbeat:
		return "heartbeat"
	case kindAnnounce:
		return "announcement"
	case kindLeaseWait:
		return "lease wait"
	case kindLeaseFilled:
		return "lease filled"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// version returns the wire version a message of kind k is written with.
func (k msgKind) version() byte {
	switch k {
	case kindAnnounce:
		return 2
	case kindLeaseWait, kindLeaseFilled:
		return 3
	}
	return 1
}

// notice reports whether k is a lease notice.
func (k msgKind) notice() bool { return k == kindLeaseWait || k == kindLeaseFilled }

// chanSeq is one entry of an announcement: a channel (by index) and the
// origin's sequence number on it.
type chanSeq struct {
	Index int
	Seq   uint64
}

// message is one bus message, decoded.
type message struct {
	// Origin identifies the sending bus: random, non-zero, chosen in New.
	Origin uint64
	// Seq is the sequence number on the message's channel. Keys and flush
	// messages each take the next number; a heartbeat repeats the number of
	// the last one sent. An announcement numbers the announcements. A
	// lease notice has none (zero).
	Seq uint64
	// Kind says what the message carries.
	Kind msgKind
	// Leaving marks the heartbeat and announcement a bus sends from Close:
	// receivers forget the origin instead of waiting for it to fall
	// silent.
	Leaving bool
	// PublishedAt is when the message was built, in Unix nanoseconds on the
	// sender's clock; receivers use it for the lag metric.
	PublishedAt int64
	// Namespace is the cache the keys belong to (empty for a heartbeat).
	Namespace string
	// Keys are the changed keys (kindKeys), the keys of a lease notice, or
	// the namespaces an announcement's origin can write.
	Keys []string
	// Seqs are an announcement's sequence numbers, by channel index.
	Seqs []chanSeq
}

// encodedSize returns the length of the encoding of a message with the
// given namespace and keys.
func encodedSize(namespace string, keys []string) int {
	n := headerSize + uvarintLen(uint64(len(namespace))) + len(namespace) + uvarintLen(uint64(len(keys)))
	for _, k := range keys {
		n += keySize(k)
	}
	return n
}

// keySize is what one key adds to an encoded message.
func keySize(key string) int { return uvarintLen(uint64(len(key))) + len(key) }

// appendMessage appends the encoding of m to dst. It does not check limits:
// the publisher builds messages within them, and tests build invalid ones
// on purpose.
func appendMessage(dst []byte, m *message) []byte {
	var flags byte
	if m.Leaving {
		flags |= flagLeaving
	}
	dst = append(dst, wireMagic, m.Kind.version(), byte(m.Kind), flags)
	dst = binary.BigEndian.AppendUint64(dst, m.Origin)
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.PublishedAt))
	dst = binary.AppendUvarint(dst, uint64(len(m.Namespace)))
	dst = append(dst, m.Namespace...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Keys)))
	for _, k := range m.Keys {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
	}
	if m.Kind == kindAnnounce {
		dst = binary.AppendUvarint(dst, uint64(len(m.Seqs)))
		for _, e := range m.Seqs {
			dst = binary.AppendUvarint(dst, uint64(e.Index))
			dst = binary.AppendUvarint(dst, e.Seq)
		}
	}
	return dst
}

// decodeMessage parses data. The namespace and keys of the result are
// substrings of data. Any input that is not the canonical encoding of a
// valid message within the limits is rejected with an error wrapping
// ErrMalformed, ErrTooLarge or ErrVersion; decodeMessage never panics.
func decodeMessage(data string) (message, error) {
	var m message
	if len(data) > MaxMessageSize {
		return m, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	if len(data) < headerSize {
		return m, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrMalformed, len(data), headerSize)
	}
	if data[0] != wireMagic {
		return m, fmt.Errorf("%w: bad magic byte %#x", ErrMalformed, data[0])
	}
	if data[1] < 1 || data[1] > wireVersion {
		return m, fmt.Errorf("%w: version %d, this node reads 1 to %d", ErrVersion, data[1], wireVersion)
	}
	m.Kind = msgKind(data[2])
	if m.Kind < kindKeys || m.Kind > kindLeaseFilled {
		return m, fmt.Errorf("%w: unknown kind %d", ErrMalformed, data[2])
	}
	if data[1] != m.Kind.version() {
		return m, fmt.Errorf("%w: a %v message in version %d (it is written in version %d)", ErrMalformed, m.Kind, data[1], m.Kind.version())
	}
	flags := data[3]
	if flags&^flagLeaving != 0 {
		return m, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	m.Leaving = flags&flagLeaving != 0
	m.Origin = be64(data[4:])
	if m.Origin == 0 {
		return m, fmt.Errorf("%w: zero origin", ErrMalformed)
	}
	m.Seq = be64(data[12:])
	m.PublishedAt = int64(be64(data[20:]))

	r := reader{data: data, off: headerSize}
	nsLen, err := r.uvarint("namespace length")
	if err != nil {
		return m, err
	}
	if nsLen > MaxNamespaceLen {
		return m, fmt.Errorf("%w: namespace of %d bytes, limit %d", ErrMalformed, nsLen, MaxNamespaceLen)
	}
	if m.Namespace, err = r.bytes(int(nsLen), "namespace"); err != nil {
		return m, err
	}
	count, err := r.uvarint("key count")
	if err != nil {
		return m, err
	}
	if count > MaxKeysPerMessage {
		return m, fmt.Errorf("%w: %d keys, limit %d", ErrMalformed, count, MaxKeysPerMessage)
	}
	// Every key takes at least its one-byte length: a count the rest of the
	// input cannot hold is rejected before anything is allocated for it.
	if count > uint64(r.remaining()) {
		return m, fmt.Errorf("%w: %d keys in %d bytes", ErrMalformed, count, r.remaining())
	}
	switch {
	case m.Kind == kindKeys && (m.Namespace == "" || count == 0):
		return m, fmt.Errorf("%w: keys message needs a namespace and at least one key", ErrMalformed)
	case m.Kind == kindFlush && (m.Namespace == "" || count != 0):
		return m, fmt.Errorf("%w: flush message needs a namespace and no key", ErrMalformed)
	case m.Kind == kindHeartbeat && (m.Namespace != "" || count != 0):
		return m, fmt.Errorf("%w: heartbeat carries no namespace and no key", ErrMalformed)
	case m.Kind == kindAnnounce && m.Namespace != "":
		return m, fmt.Errorf("%w: announcement carries a namespace", ErrMalformed)
	case m.Kind.notice() && (m.Namespace == "" || count == 0 || m.Seq != 0):
		return m, fmt.Errorf("%w: a %v needs a namespace, at least one key and no sequence number", ErrMalformed, m.Kind)
	case m.Leaving && m.Kind != kindHeartbeat && m.Kind != kindAnnounce:
		return m, fmt.Errorf("%w: leaving flag on a %v message", ErrMalformed, m.Kind)
	}
	if count > 0 {
		m.Keys = make([]string, count)
		for i := range m.Keys {
			n, err := r.uvarint("key length")
			if err != nil {
				return m, err
			}
			if n > MaxKeyLen {
				return m, fmt.Errorf("%w: key of %d bytes, limit %d", ErrMalformed, n, MaxKeyLen)
			}
			if m.Kind == kindAnnounce && (n == 0 || n > MaxNamespaceLen) {
				return m, fmt.Errorf("%w: announced namespace of %d bytes", ErrMalformed, n)
			}
			if m.Keys[i], err = r.bytes(int(n), "key"); err != nil {
				return m, err
			}
		}
	}
	if m.Kind == kindAnnounce {
		n, err := r.uvarint("sequence count")
		if err != nil {
			return m, err
		}
		if n > maxSeqEntries || n > uint64(r.remaining()) {
			return m, fmt.Errorf("%w: %d sequence entries", ErrMalformed, n)
		}
		if n > 0 {
			m.Seqs = make([]chanSeq, n)
		}
		for i := range m.Seqs {
			idx, err := r.uvarint("channel index")
			if err != nil {
				return m, err
			}
			if idx >= MaxShards || (i > 0 && idx <= uint64(m.Seqs[i-1].Index)) {
				return m, fmt.Errorf("%w: channel index %d out of order or range", ErrMalformed, idx)
			}
			seq, err := r.uvarint("sequence number")
			if err != nil {
				return m, err
			}
			m.Seqs[i] = chanSeq{Index: int(idx), Seq: seq}
		}
	}
	if r.remaining() != 0 {
		return m, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, r.remaining())
	}
	return m, nil
}

func be64(s string) uint64 {
	_ = s[7]
	return uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
		uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
}

// reader walks the variable part of an encoded message.
type reader struct {
	data string
	off  int
}

func (r *reader) remaining() int { return len(r.data) - r.off }

// uvarint reads a canonical (shortest-form) unsigned varint.
func (r *reader) uvarint(what string) (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if r.off >= len(r.data) {
			return 0, fmt.Errorf("%w: truncated %s", ErrMalformed, what)
		}
		b := r.data[r.off]
		r.off++
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, fmt.Errorf("%w: %s overflows 64 bits", ErrMalformed, what)
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if i > 0 && b == 0 {
				return 0, fmt.Errorf("%w: non-canonical %s", ErrMalformed, what)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: %s overflows 64 bits", ErrMalformed, what)
}

func (r *reader) bytes(n int, what string) (string, error) {
	if n > r.remaining() {
		return "", fmt.Errorf("%w: truncated %s (%d bytes, %d left)", ErrMalformed, what, n, r.remaining())
	}
	s := r.data[r.off : r.off+n]
	r.off += n
	return s, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
