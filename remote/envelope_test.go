package remote

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	exp := time.UnixMilli(1_900_000_000_123)
	tests := []driver.Entry{
		{Kind: driver.KindValue, Payload: []byte(`{"id":42}`), ExpiresAt: exp, LoadTime: 3 * time.Millisecond, Version: 7},
		{Kind: driver.KindValue, Payload: []byte{}, ExpiresAt: exp, Version: 1},
		{Kind: driver.KindNotFound, ExpiresAt: exp, Version: 9},
		{Kind: driver.KindLease, ExpiresAt: exp, Version: 1<<64 - 1},
	}
	for _, want := range tests {
		got, err := Decode(Encode(nil, want))
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", want, err)
		}
		if got.Kind != want.Kind || !bytes.Equal(got.Payload, want.Payload) || !got.ExpiresAt.Equal(want.ExpiresAt) ||
			got.LoadTime != want.LoadTime || got.Version != want.Version {
			t.Errorf("round trip = %+v, want %+v", got, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Encode(nil, driver.Entry{Kind: driver.KindNotFound, ExpiresAt: time.Now()})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := map[string][]byte{
		"empty":          nil,
		"short":          good[:10],
		"bad magic":      mutate(func(b []byte) []byte { b[0] = 'x'; return b }),
		"future version": mutate(func(b []byte) []byte { b[1] = 2; return b }),
		"unknown kind":   mutate(func(b []byte) []byte { b[2] = 9; return b }),
		"none kind":      mutate(func(b []byte) []byte { b[2] = byte(driver.KindNone); return b }),
		"lease payload":  mutate(func(b []byte) []byte { b[2] = byte(driver.KindLease); return append(b, 'x') }),
		"negative load":  mutate(func(b []byte) []byte { b[11] = 0x80; return b }),
		"plain text":     []byte("hello, this is not an envelope at all"),
	}
	for name, b := range tests {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode = %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, driver.Entry{Kind: driver.KindValue, Payload: []byte(`"v"`), ExpiresAt: time.UnixMilli(1), Version: 1}))
	f.Add(Encode(nil, driver.Entry{Kind: driver.KindLease, ExpiresAt: time.UnixMilli(2), Version: 2}))
	f.Add([]byte{magic, formatVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if again := Encode(nil, e); !bytes.Equal(again, b) {
			t.Fatalf("Encode(Decode(%x)) = %x", b, again)
		}
	})
}

func TestSlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	tests := map[string]uint16{
		"123456789":        12739, // CRC16 XMODEM check value 0x31C3 % 16384
		"foo":              12182,
		"{user1000}.name":  slot("user1000"),
		"foo{}{bar}":       slot("foo{}{bar}"),
		"{}":               slot("{}"),
		"{user1000}.other": slot("user1000"),
	}
	for k, want := range tests {
		if got := slot(k); got != want {
			t.Errorf("slot(%q) = %d, want %d", k, got, want)
		}
	}
}
