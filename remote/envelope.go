package remote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Envelope layout, all integers big-endian:
//
//	offset size field
//	0      1    magic 0xC7
//	1      1    format version (1)
//	2      1    kind
//	3      8    expiry, Unix milliseconds
//	11     8    load time, nanoseconds
//	19     8    version id (the lease token for a lease)
//	27     -    payload
const (
	magic         = 0xC7
	formatVersion = 1
	headerSize    = 27
	versionOffset = 19
)

// ErrCorrupt is returned by Decode for bytes that are not an envelope this
// package can read.
var ErrCorrupt = errors.New("remote: corrupt or foreign value")

// Encode appends the envelope of e to dst and returns it.
func Encode(dst []byte, e driver.Entry) []byte {
	var h [headerSize]byte
	h[0], h[1], h[2] = magic, formatVersion, byte(e.Kind)
	binary.BigEndian.PutUint64(h[3:], uint64(e.ExpiresAt.UnixMilli()))
	binary.BigEndian.PutUint64(h[11:], uint64(e.LoadTime))
	binary.BigEndian.PutUint64(h[versionOffset:], e.Version)
	dst = append(dst, h[:]...)
	return append(dst, e.Payload...)
}

// Decode parses an envelope. The returned Payload aliases b.
func Decode(b []byte) (driver.Entry, error) {
	if len(b) < headerSize {
		return driver.Entry{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(b), headerSize)
	}
	if b[0] != magic {
		return driver.Entry{}, fmt.Errorf("%w: bad magic byte %#x", ErrCorrupt, b[0])
	}
	if b[1] != formatVersion {
		return driver.Entry{}, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, b[1])
	}
	e := driver.Entry{
		Kind:      driver.Kind(b[2]),
		ExpiresAt: time.UnixMilli(int64(binary.BigEndian.Uint64(b[3:]))),
		LoadTime:  time.Duration(binary.BigEndian.Uint64(b[11:])),
		Version:   binary.BigEndian.Uint64(b[versionOffset:]),
	}
	switch e.Kind {
	case driver.KindValue, driver.KindTagged:
		e.Payload = b[headerSize:]
	case driver.KindFailed, driver.KindUnstorable:
		e.Payload = b[headerSize:]
	case driver.KindNotFound, driver.KindLease:
		if len(b) != headerSize {
			return driver.Entry{}, fmt.Errorf("%w: kind %d with a %d-byte payload", ErrCorrupt, e.Kind, len(b)-headerSize)
		}
	default:
		return driver.Entry{}, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, e.Kind)
	}
	if e.LoadTime < 0 {
		return driver.Entry{}, fmt.Errorf("%w: negative load time", ErrCorrupt)
	}
	return e, nil
}
