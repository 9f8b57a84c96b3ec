package invalidation

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    message
	}{
		{"keys", message{Origin: 1, Seq: 2, Kind: kindKeys, PublishedAt: 3, Namespace: "users", Keys: []string{"42"}}},
		{"many keys", message{Origin: ^uint64(0), Seq: ^uint64(0), Kind: kindKeys, PublishedAt: -1, Namespace: "n", Keys: []string{"", "a", strings.Repeat("k", 300)}}},
		{"flush", message{Origin: 7, Seq: 9, Kind: kindFlush, PublishedAt: 1 << 62, Namespace: "orders"}},
		{"heartbeat", message{Origin: 7, Seq: 0, Kind: kindHeartbeat}},
		{"leaving", message{Origin: 7, Seq: 5, Kind: kindHeartbeat, Leaving: true}},
		{"limits", message{Origin: 1, Kind: kindKeys, Namespace: strings.Repeat("n", MaxNamespaceLen), Keys: []string{strings.Repeat("k", MaxKeyLen)}}},
		{"lease wait", message{Origin: 3, Kind: kindLeaseWait, PublishedAt: 4, Namespace: "users", Keys: []string{"42", "43"}}},
		{"lease filled", message{Origin: 3, Kind: kindLeaseFilled, PublishedAt: 4, Namespace: "users", Keys: []string{"42"}}},
	}
	announcements := []message{
		{Origin: 4, Seq: 9, Kind: kindAnnounce, PublishedAt: 5, Keys: []string{"orders", "users"}, Seqs: []chanSeq{{0, 5}, {3, 1 << 40}}},
		{Origin: 5, Seq: 1, Kind: kindAnnounce, Leaving: true},
	}
	for i, m := range announcements {
		got, err := decodeMessage(string(appendMessage(nil, &m)))
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("announcement %d: decode = %+v, %v; want %+v", i, got, err, m)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := appendMessage(nil, &tt.m)
			if got, want := len(data), encodedSize(tt.m.Namespace, tt.m.Keys); got != want {
				t.Errorf("encoded %d bytes, encodedSize says %d", got, want)
			}
			got, err := decodeMessage(string(data))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.m) {
				t.Errorf("decode(encode(m)) = %+v, want %+v", got, tt.m)
			}
		})
	}
}

// TestMessageRoundTripRandom is the round-trip property over random valid
// messages.
func TestMessageRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	str := func(max int) string {
		b := make([]byte, r.IntN(max+1))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return string(b)
	}
	for i := range 2000 {
		m := message{Origin: r.Uint64() | 1, Seq: r.Uint64(), PublishedAt: r.Int64(), Kind: msgKind(1 + r.IntN(3))}
		switch m.Kind {
		case kindKeys:
			m.Namespace = "n" + str(MaxNamespaceLen-1)
			m.Keys = make([]string, 1+r.IntN(50))
			for j := range m.Keys {
				m.Keys[j] = str(200)
			}
		case kindFlush:
			m.Namespace = "n" + str(20)
		case kindHeartbeat:
			m.Leaving = r.IntN(2) == 0
		}
		data := appendMessage(nil, &m)
		got, err := decodeMessage(string(data))
		if err != nil {
			t.Fatalf("message %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("message %d: decode(encode(m)) = %+v, want %+v", i, got, m)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := func(m message) []byte { return appendMessage(nil, &m) }
	keys := message{Origin: 1, Seq: 1, Kind: kindKeys, Namespace: "ns", Keys: []string{"a", "b"}}
	good := valid(keys)
	patch := func(off int, b byte) []byte {
		d := append([]byte(nil), good...)
		d[off] = b
		return d
	}
	// header + namespace "ns" is at 28..30, count at 31.
	manyKeys := make([]string, MaxKeysPerMessage+1)
	for i := range manyKeys {
		manyKeys[i] = "k"
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short header", good[:headerSize-1], ErrMalformed},
		{"truncated key", good[:len(good)-1], ErrMalformed},
		{"trailing byte", append(append([]byte(nil), good...), 0), ErrMalformed},
		{"bad magic", patch(0, 'X'), ErrMalformed},
		{"version 4", patch(1, 4), ErrVersion},
		{"keys in version 3", patch(1, 3), ErrMalformed},
		{"version 0", patch(1, 0), ErrVersion},
		{"keys in version 2", patch(1, 2), ErrMalformed},
		{"kind 0", patch(2, 0), ErrMalformed},
		{"kind 7", patch(2, 7), ErrMalformed},
		{"lease wait in version 1", patch(2, 5), ErrMalformed},
		{"lease filled in version 1", patch(2, 6), ErrMalformed},
		{"lease wait without key", valid(message{Origin: 1, Kind: kindLeaseWait, Namespace: "ns"}), ErrMalformed},
		{"lease filled without namespace", valid(message{Origin: 1, Kind: kindLeaseFilled, Keys: []string{"a"}}), ErrMalformed},
		{"numbered lease notice", valid(message{Origin: 1, Seq: 1, Kind: kindLeaseFilled, Namespace: "ns", Keys: []string{"a"}}), ErrMalformed},
		{"leaving lease notice", func() []byte {
			d := valid(message{Origin: 1, Kind: kindLeaseWait, Namespace: "ns", Keys: []string{"a"}})
			d[3] = flagLeaving
			return d
		}(), ErrMalformed},
		{"announcement in version 1", patch(2, 4), ErrMalformed},
		{"unknown flag", patch(3, 2), ErrMalformed},
		{"leaving keys", patch(3, flagLeaving), ErrMalformed},
		{"zero origin", valid(message{Kind: kindHeartbeat}), ErrMalformed},
		{"keys without key", valid(message{Origin: 1, Kind: kindKeys, Namespace: "ns"}), ErrMalformed},
		{"keys without namespace", valid(message{Origin: 1, Kind: kindKeys, Keys: []string{"a"}}), ErrMalformed},
		{"flush with key", valid(message{Origin: 1, Kind: kindFlush, Namespace: "ns", Keys: []string{"a"}}), ErrMalformed},
		{"flush without namespace", valid(message{Origin: 1, Kind: kindFlush}), ErrMalformed},
		{"heartbeat with namespace", valid(message{Origin: 1, Kind: kindHeartbeat, Namespace: "ns"}), ErrMalformed},
		{"namespace too long", valid(message{Origin: 1, Kind: kindFlush, Namespace: strings.Repeat("n", MaxNamespaceLen+1)}), ErrMalformed},
		{"key too long", valid(message{Origin: 1, Kind: kindKeys, Namespace: "n", Keys: []string{strings.Repeat("k", MaxKeyLen+1)}}), ErrMalformed},
		{"too many keys", valid(message{Origin: 1, Kind: kindKeys, Namespace: "n", Keys: manyKeys}), ErrMalformed},
		{"too large", make([]byte, MaxMessageSize+1), ErrTooLarge},
		{"count beyond input", append(valid(message{Origin: 1, Kind: kindFlush, Namespace: "n"})[:headerSize+2], 0x80, 0x20), ErrMalformed},
		{"non-canonical varint", append(append(good[:headerSize:headerSize], 0x82, 0x00), "ns\x01\x01a"...), ErrMalformed},
		{"varint overflow", append(good[:headerSize:headerSize], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeMessage(string(tt.data))
			if !errors.Is(err, tt.want) {
				t.Errorf("decode error = %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzDecode checks that the decoder never panics, that whatever it accepts
// is within the limits, and that it accepts only canonical encodings:
// encode(decode(data)) == data.
func FuzzDecode(f *testing.F) {
	for _, m := range []message{
		{Origin: 1, Seq: 1, Kind: kindKeys, Namespace: "users", Keys: []string{"42", "43"}},
		{Origin: 2, Seq: 300, Kind: kindFlush, Namespace: "orders", PublishedAt: 1700000000000000000},
		{Origin: 3, Seq: 7, Kind: kindHeartbeat, Leaving: true},
		{Origin: 4, Seq: 9, Kind: kindAnnounce, Keys: []string{"orders", "users"}, Seqs: []chanSeq{{0, 5}, {3, 1 << 40}}},
		{Origin: 5, Seq: 1, Kind: kindAnnounce, Leaving: true},
		{Origin: 6, Kind: kindLeaseWait, Namespace: "users", Keys: []string{"42"}},
		{Origin: 7, Kind: kindLeaseFilled, Namespace: "users", Keys: []string{"42", "43"}},
	} {
		f.Add(appendMessage(nil, &m))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(string(data))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if len(m.Namespace) > MaxNamespaceLen || len(m.Keys) > MaxKeysPerMessage || m.Origin == 0 {
			t.Fatalf("accepted a message over the limits: %+v", m)
		}
		for _, k := range m.Keys {
			if len(k) > MaxKeyLen {
				t.Fatalf("accepted a key of %d bytes", len(k))
			}
		}
		if again := appendMessage(nil, &m); string(again) != string(data) {
			t.Fatalf("encode(decode(data)) = %x, want %x", again, data)
		}
	})
}

func TestUvarintLen(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1 << 35, ^uint64(0)} {
		if got, want := uvarintLen(v), len(binary.AppendUvarint(nil, v)); got != want {
			t.Errorf("uvarintLen(%d) = %d, want %d", v, got, want)
		}
	}
}
