package middleware

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// The stored record's encodings: the binary format, JSON around it, and
// Codec for the L2 store.

// ---- Binary format ----
//
// Version 1, every integer in big-endian or unsigned varint (uv) form:
//
//	magic "tcr" | version 1 | kind (1 byte) | id (8 bytes)
//	kindResponse: status (uv) | flags (1 byte) | storedAt unix nanos (varint)
//	              | initialAge, fresh, swr, sie nanos (uv each)
//	              | tag count (uv) | per tag: len (uv) name, generation (8 bytes)
//	              | field count (uv) | per field: len (uv) name, value count (uv),
//	                per value: len (uv) value
//	              | body len (uv) body
//	kindVary:     name count (uv) | per name: len (uv) name
//	kindPass:     storedAt unix nanos (varint) | duration nanos (uv)
//	kindGen, kindMoved: nothing
//
// The record must end exactly where its last field ends. Fields and tags
// are written sorted; the decoder requires tags and vary names sorted and
// unique, and rejects anything over the limits above.

const (
	codecVersion = 1
	codecMagic   = "tcr"
)

// MarshalBinary encodes the record in the package's compact binary format.
func (r *Response) MarshalBinary() ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil response", ErrMalformed)
	}
	n := 64 + len(r.body)
	for k, vs := range r.header {
		n += len(k) + 4
		for _, v := range vs {
			n += len(v) + 3
		}
	}
	b := make([]byte, 0, n)
	b = append(b, codecMagic...)
	b = append(b, codecVersion, r.kind)
	b = binary.BigEndian.AppendUint64(b, r.id)
	switch r.kind {
	case kindVary:
		b = binary.AppendUvarint(b, uint64(len(r.vary)))
		for _, v := range r.vary {
			b = appendString(b, v)
		}
	case kindPass:
		b = binary.AppendVarint(b, r.storedAt.UnixNano())
		b = binary.AppendUvarint(b, uint64(max(r.fresh, 0)))
	case kindResponse:
		b = binary.AppendUvarint(b, uint64(r.status))
		b = append(b, r.flags)
		b = binary.AppendVarint(b, r.storedAt.UnixNano())
		for _, d := range [...]time.Duration{r.initialAge, r.fresh, r.swr, r.sie} {
			b = binary.AppendUvarint(b, uint64(max(d, 0)))
		}
		b = binary.AppendUvarint(b, uint64(len(r.tags)))
		for _, t := range r.tags {
			b = appendString(b, t.name)
			b = binary.BigEndian.AppendUint64(b, t.gen)
		}
		names := make([]string, 0, len(r.header))
		for k := range r.header {
			names = append(names, k)
		}
		slices.Sort(names)
		b = binary.AppendUvarint(b, uint64(len(names)))
		for _, k := range names {
			b = appendString(b, k)
			vs := r.header[k]
			b = binary.AppendUvarint(b, uint64(len(vs)))
			for _, v := range vs {
				b = appendString(b, v)
			}
		}
		b = binary.AppendUvarint(b, uint64(len(r.body)))
		b = append(b, r.body...)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// UnmarshalBinary decodes a record written by MarshalBinary. Malformed
// input returns an error matching ErrMalformed; it never panics.
func (r *Response) UnmarshalBinary(data []byte) error {
	d := decoder{data: data}
	*r = Response{}
	if len(data) < len(codecMagic)+2+8 || string(data[:len(codecMagic)]) != codecMagic {
		return fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if v := data[len(codecMagic)]; v != codecVersion {
		return fmt.Errorf("%w: format version %d", ErrMalformed, v)
	}
	r.kind = data[len(codecMagic)+1]
	r.id = binary.BigEndian.Uint64(data[len(codecMagic)+2:])
	d.off = len(codecMagic) + 2 + 8
	switch r.kind {
	case kindGen, kindMoved:
	case kindPass:
		r.storedAt = time.Unix(0, d.varint("stored at"))
		r.fresh = time.Duration(d.uvarint(uint64(maxStoredDuration), "duration"))
	case kindVary:
		n := d.count(maxSpecNames, "vary names")
		r.vary = make([]string, 0, n)
		for range n {
			r.vary = append(r.vary, d.string(maxFieldNameLen, "vary name"))
		}
	case kindResponse:
		r.status = int(d.uvarint(999, "status"))
		r.flags = d.byte("flags")
		r.storedAt = time.Unix(0, d.varint("stored at"))
		for _, p := range [...]*time.Duration{&r.initialAge, &r.fresh, &r.swr, &r.sie} {
			*p = time.Duration(d.uvarint(uint64(maxStoredDuration), "duration"))
		}
		n := d.count(maxTags, "tags")
		if n > 0 {
			r.tags = make([]tagRef, 0, n)
		}
		for range n {
			name := d.string(maxTagLen, "tag")
			gen := d.uint64("tag generation")
			r.tags = append(r.tags, tagRef{name: name, gen: gen})
		}
		n = d.count(maxHeaderFields, "header fields")
		r.header = make(http.Header, n)
		for range n {
			k := d.string(maxFieldNameLen, "field name")
			nv := d.count(maxFieldValues, "field values")
			if d.err != nil {
				break
			}
			if _, dup := r.header[k]; dup {
				d.fail("duplicate field %q", k)
				break
			}
			vs := make([]string, 0, nv)
			for range nv {
				vs = append(vs, d.string(maxFieldValueLen, "field value"))
			}
			r.header[k] = vs
		}
		bl := d.count(len(data), "body")
		if d.err == nil {
			r.body = slices.Clone(data[d.off : d.off+bl])
			d.off += bl
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, r.kind)
	}
	if d.err != nil {
		*r = Response{}
		return d.err
	}
	if d.off != len(data) {
		*r = Response{}
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(data)-d.off)
	}
	if err := r.finish(); err != nil {
		*r = Response{}
		return err
	}
	return nil
}

// decoder reads the binary format; the first error sticks and later reads
// return zero values.
type decoder struct {
	data []byte
	off  int
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte(what string) uint8 {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.data) {
		d.fail("truncated %s", what)
		return 0
	}
	d.off++
	return d.data[d.off-1]
}

func (d *decoder) uint64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.data)-d.off < 8 {
		d.fail("truncated %s", what)
		return 0
	}
	d.off += 8
	return binary.BigEndian.Uint64(d.data[d.off-8:])
}

func (d *decoder) uvarint(limit uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	if n <= 0 {
		d.fail("bad %s", what)
		return 0
	}
	if v > limit {
		d.fail("%s %d over limit %d", what, v, limit)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.data[d.off:])
	if n <= 0 {
		d.fail("bad %s", what)
		return 0
	}
	d.off += n
	return v
}

// count reads a length or count no larger than limit nor than the bytes
// left (every counted item takes at least one byte).
func (d *decoder) count(limit int, what string) int {
	v := d.uvarint(uint64(limit), what)
	if d.err == nil && v > uint64(len(d.data)-d.off) {
		d.fail("%s count %d exceeds the %d bytes left", what, v, len(d.data)-d.off)
		return 0
	}
	return int(v)
}

func (d *decoder) string(limit int, what string) string {
	n := d.count(limit, what)
	if d.err != nil {
		return ""
	}
	s := string(d.data[d.off : d.off+n])
	d.off += n
	return s
}

// MarshalJSON encodes the record as a JSON string holding its binary form
// (base64), so a tiered cache with the default JSON codec stores it too.
// Codec is more compact.
func (r *Response) MarshalJSON() ([]byte, error) {
	b, err := r.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(b)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (r *Response) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return r.UnmarshalBinary(b)
}

// Codec is a compact binary codec for the L2 store of a
// tiered.Cache[*Response] (it satisfies remote.Codec structurally):
//
//	l2, err := remote.New(rdb, remote.WithCodec(middleware.Codec{}))
//
// It encodes only *Response values. The zero value is ready to use and safe
// for concurrent use.
type Codec struct{}

// Marshal encodes v, a *Response.
func (Codec) Marshal(v any) ([]byte, error) {
	r, ok := v.(*Response)
	if !ok {
		return nil, fmt.Errorf("middleware: Codec encodes *middleware.Response, not %T", v)
	}
	return r.MarshalBinary()
}

// Unmarshal decodes data into v, a **Response. Malformed input returns an
// error matching ErrMalformed.
func (Codec) Unmarshal(data []byte, v any) error {
	p, ok := v.(**Response)
	if !ok || p == nil {
		return fmt.Errorf("middleware: Codec decodes into **middleware.Response, not %T", v)
	}
	r := new(Response)
	if err := r.UnmarshalBinary(data); err != nil {
		return err
	}
	*p = r
	return nil
}
