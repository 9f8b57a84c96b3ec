package remote

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// TestEnvelopeWireCompatible (issue 19, mixed versions): the L2 entries the
// previous release wrote (testdata/envelopes-fe0d7e8.txt, made with that
// release's Encode) decode to the same entries here, and this release
// encodes those entries to the same bytes, so nodes of both releases on one
// cache read each other's values, not-founds, leases and markers, and the
// scripts (which read the version and kind at fixed offsets) see the same
// layout.
func TestEnvelopeWireCompatible(t *testing.T) {
	at := time.UnixMilli(1_800_000_000_123)
	want := map[string]driver.Entry{
		"value":      {Kind: driver.KindValue, Payload: []byte(`{"id":"42","name":"Ada"}`), ExpiresAt: at, LoadTime: 1500 * time.Microsecond, Version: 0x0102030405060708},
		"not-found":  {Kind: driver.KindNotFound, ExpiresAt: at, LoadTime: time.Millisecond, Version: 9},
		"lease":      {Kind: driver.KindLease, ExpiresAt: at, Version: 0xdeadbeefcafef00d},
		"failed":     {Kind: driver.KindFailed, Payload: []byte("db down"), ExpiresAt: at, Version: 0xdeadbeefcafef00d},
		"tagged":     {Kind: driver.KindTagged, Payload: []byte("\x01\x03usr\x00\x00\x00\x00\x00\x00\x00\x07{}"), ExpiresAt: at, Version: 77},
		"unstorable": {Kind: driver.KindUnstorable, Payload: []byte("too large"), ExpiresAt: at, Version: 5},
	}
	f, err := os.Open("testdata/envelopes-fe0d7e8.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, ok := strings.Cut(line, " ")
		w, known := want[name]
		if !ok || !known {
			t.Fatalf("bad line %q", line)
		}
		old, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(old)
		if err != nil {
			t.Fatalf("%s: the previous release's bytes do not decode: %v", name, err)
		}
		if got.Kind != w.Kind || !bytes.Equal(got.Payload, w.Payload) || !got.ExpiresAt.Equal(w.ExpiresAt) || got.LoadTime != w.LoadTime || got.Version != w.Version {
			t.Errorf("%s: decoded %+v, want %+v", name, got, w)
		}
		if enc := Encode(nil, w); !bytes.Equal(enc, old) {
			t.Errorf("%s: this release writes %x, the previous one %x", name, enc, old)
		}
		seen++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Fatalf("%d envelopes in the file, want %d", seen, len(want))
	}
}
