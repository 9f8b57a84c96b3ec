package middleware

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// sampleRecords are valid records of every kind, the seeds of FuzzDecode.
func sampleRecords(t testing.TB) map[string]*Response {
	t.Helper()
	resp := &Response{
		kind: kindResponse, flags: flagShared, status: 200, id: 42,
		storedAt:   time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
		initialAge: 2 * time.Second, fresh: time.Minute, swr: 30 * time.Second, sie: time.Hour,
		header: http.Header{
			"Content-Type":  {"text/html; charset=utf-8"},
			"Cache-Control": {"public, max-age=60", "stale-while-revalidate=30"},
			"Etag":          {`W/"v1"`},
			"Date":          {"Wed, 02 Jan 2030 03:04:05 GMT"},
			"X-Empty":       {},
		},
		body: []byte("<p>hello</p>"),
		tags: []tagRef{{name: "list", gen: 7}, {name: "product-1", gen: 1 << 60}},
	}
	at := time.Unix(1_900_000_000, 0)
	notFound := &Response{kind: kindResponse, status: 404, id: 1, storedAt: at, fresh: time.Second, header: http.Header{}}
	noContent := &Response{kind: kindResponse, status: 204, id: 2, storedAt: at, fresh: time.Second, flags: flagNoStale}
	vary := &Response{kind: kindVary, id: 3, vary: []string{"Accept", "Accept-Language", "X-Forwarded-Host"}}
	gen := &Response{kind: kindGen, id: 4}
	moved := &Response{kind: kindMoved, id: 5}
	out := map[string]*Response{"response": resp, "not_found": notFound, "no_content": noContent, "vary": vary, "gen": gen, "moved": moved}
	for name, r := range out {
		if err := r.finish(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return out
}

func TestCodecRoundTrip(t *testing.T) {
	for name, r := range sampleRecords(t) {
		t.Run(name, func(t *testing.T) {
			b, err := Codec{}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var got *Response
			if err := (Codec{}).Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !equalRecords(got, r) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
			}
			// JSON (the tiered default codec) holds the same bytes.
			j, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var viaJSON *Response
			if err := json.Unmarshal(j, &viaJSON); err != nil {
				t.Fatal(err)
			}
			if !equalRecords(viaJSON, r) {
				t.Errorf("JSON round trip differs")
			}
		})
	}
}

func equalRecords(a, b *Response) bool {
	return a.kind == b.kind && a.flags == b.flags && a.status == b.status && a.id == b.id &&
		a.storedAt.Equal(b.storedAt) && a.initialAge == b.initialAge && a.fresh == b.fresh &&
		a.swr == b.swr && a.sie == b.sie && reflect.DeepEqual(a.header, b.header) &&
		bytes.Equal(a.body, b.body) && reflect.DeepEqual(a.vary, b.vary) && reflect.DeepEqual(a.tags, b.tags) &&
		a.etag == b.etag && a.validator.Equal(b.validator)
}

func TestCodecRejects(t *testing.T) {
	good, err := sampleRecords(t)["response"].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := map[string][]byte{
		"empty":          nil,
		"bad magic":      mutate(func(b []byte) []byte { b[0] = 'x'; return b }),
		"future version": mutate(func(b []byte) []byte { b[3] = 2; return b }),
		"unknown kind":   mutate(func(b []byte) []byte { b[4] = 9; return b }),
		"truncated":      good[:len(good)-1],
		"trailing byte":  append(bytes.Clone(good), 0),
		"huge count":     append(append([]byte("tcr\x01\x02"), make([]byte, 8)...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"vary unsorted":  append(append([]byte("tcr\x01\x02"), make([]byte, 8)...), 2, 1, 'b', 1, 'a'),
		"vary empty":     append(append([]byte("tcr\x01\x02"), make([]byte, 8)...), 0),
		"gen with data":  append(append([]byte("tcr\x01\x03"), make([]byte, 8)...), 0),
	}
	for i := range len(good) {
		tests["truncated at "+strconv.Itoa(i)] = good[:i]
	}
	for name, data := range tests {
		var r Response
		if err := r.UnmarshalBinary(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// A header value that could split a response.
	bad := sampleRecords(t)["response"]
	bad.header["X-Evil"] = []string{"a\r\nSet-Cookie: x=1"}
	b, _ := bad.MarshalBinary()
	var r Response
	if err := r.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("CRLF in a value: %v, want ErrMalformed", err)
	}
	var p *Response
	if err := (Codec{}).Unmarshal(good, p); err == nil {
		t.Error("Unmarshal into a nil **Response target type: nil error")
	}
	if _, err := (Codec{}).Marshal("x"); err == nil {
		t.Error("Marshal of a string: nil error")
	}
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecode when
// TIERCACHE_WRITE_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("TIERCACHE_WRITE_SEEDS") == "" {
		t.Skip("set TIERCACHE_WRITE_SEEDS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{"garbage": []byte("not a record"), "truncated_header": []byte("tcr\x01")}
	for name, r := range sampleRecords(t) {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = b
	}
	for name, b := range seeds {
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed_"+name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDecode: the decoder never panics, rejects with ErrMalformed, and
// whatever it accepts encodes back to a record that decodes equal.
func FuzzDecode(f *testing.F) {
	for _, r := range sampleRecords(f) {
		b, err := r.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Response
		if err := r.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			return
		}
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var again Response
		if err := again.UnmarshalBinary(b); err != nil {
			t.Fatalf("re-decoding an accepted record: %v", err)
		}
		if !equalRecords(&r, &again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", r, again)
		}
		for _, f := range r.fields {
			for _, v := range f.values {
				if !validFieldValue(v) {
					t.Fatalf("accepted unsafe value %q", v)
				}
			}
		}
	})
}
