package middleware

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kinds of stored records. A *Response in the cache is one of them.
const (
	kindResponse uint8 = 1 // a stored HTTP response
	kindVary     uint8 = 2 // a URL's vary spec: the fields selecting a variant
	kindGen      uint8 = 3 // a generation number (of a tag, or the purge epoch)
	kindMoved    uint8 = 4 // under a successor key: the refreshed response (id) is stored under the stale one's key
	kindPass     uint8 = 5 // hit-for-pass: the origin's response was not storable; go straight to the origin until storedAt+fresh
)

// Response flags.
const (
	flagShared  uint8 = 1 << 0 // public, s-maxage or must-revalidate: may answer requests with Authorization
	flagNoStale uint8 = 1 << 1 // must-revalidate, proxy-revalidate or no-cache: never served stale
	flagNoCache uint8 = 1 << 2 // no-cache: validated with the origin before every use (its lifetime is 0)
	flagsKnown        = flagShared | flagNoStale | flagNoCache
)

// MaxTags is the most tags (values of the WithTagHeader field) a stored
// response may carry: a response with more is not stored, since a purge of
// the tags left out would miss it.
const MaxTags = 64

// Limits of a stored response, enforced when storing and when decoding.
const (
	maxHeaderFields   = 256
	maxFieldValues    = 64
	maxFieldNameLen   = 256
	maxFieldValueLen  = 64 << 10
	maxTags           = MaxTags
	maxTagLen         = 256
	maxVaryNames      = 32 // names in a response's Vary
	maxKeyHeaders     = 32 // WithKeyHeaders entries
	maxSpecNames      = maxVaryNames + maxKeyHeaders
	maxStoredDuration = 100 * 365 * 24 * time.Hour
)

// Errors.
var (
	// ErrMalformed is returned when decoding bytes that are not a stored
	// response written by this package (corrupt, truncated, foreign or a
	// future format).
	ErrMalformed = errors.New("middleware: malformed stored response")
	// ErrInvalidOption is returned by New for an option it cannot use.
	ErrInvalidOption = errors.New("middleware: invalid option")
	// ErrClosed is returned by Purge and PurgeTag after Close.
	ErrClosed = errors.New("middleware: closed")
	// ErrInvalidURL is returned by Purge for a URL it cannot key.
	ErrInvalidURL = errors.New("middleware: invalid URL")
)

// Response is what the middleware stores in its tiered.Cache: a stored HTTP
// response (status, header fields, body, and the times and directives that
// decide its freshness), or one of two small internal records (the list of
// fields a URL's responses vary on, and tag generations). Build the cache as
// a tiered.Cache[*Response]; the middleware creates every value.
//
// A *Response is immutable once stored and is shared by every request that
// it answers, so its methods return copies or read-only views. It is safe
// for concurrent use.
type Response struct {
	kind       uint8
	flags      uint8
	status     int
	id         uint64 // random per stored record; kindGen: the generation; kindMoved: the id of the refreshed response
	storedAt   time.Time
	initialAge time.Duration // corrected initial age (RFC 9111, Section 4.2.3)
	fresh      time.Duration // freshness lifetime
	swr, sie   time.Duration // stale-while-revalidate, stale-if-error windows
	header     http.Header   // stored fields; each value slice has len == cap
	body       []byte
	vary       []string // kindVary: the selecting field names, canonical, sorted
	tags       []tagRef // sorted by name

	// Derived by finish, never encoded.
	fields      []field   // header as a slice, for writing
	notModified []field   // the fields of a 304 answered from this response
	etag        string    // opaque-tag of ETag (with quotes, without W/); "" if none
	validator   time.Time // Last-Modified, else Date; zero if neither parses
}

// field is one header field prepared for writing.
type field struct {
	name   string
	values []string
}

// tagRef is a surrogate key of a stored response with the generation of the
// tag when the response was stored.
type tagRef struct {
	name string
	gen  uint64
	key  string // the tag's cache key, derived
}

// Status returns the stored status code (0 for an internal record).
func (r *Response) Status() int { return r.status }

// Header returns a copy of the stored header fields.
func (r *Response) Header() http.Header { return r.header.Clone() }

// Body returns the stored body. The slice is shared: do not modify it.
func (r *Response) Body() []byte { return r.body }

// StoredAt returns when the response was received from the origin.
func (r *Response) StoredAt() time.Time { return r.storedAt }

// Tags returns the response's surrogate keys (tags), sorted.
func (r *Response) Tags() []string {
	out := make([]string, len(r.tags))
	for i, t := range r.tags {
		out[i] = t.name
	}
	return out
}

// Size approximates the memory a stored record takes, in bytes. It suits
// local.WithCost when the L1 is bounded by bytes (local.WithMaxCost).
func (r *Response) Size() int64 {
	n := 160 + len(r.body)
	for k, vs := range r.header {
		n += len(k) + 40
		for _, v := range vs {
			n += len(v) + 16
		}
	}
	for _, t := range r.tags {
		n += 2*len(t.name) + 48
	}
	for _, v := range r.vary {
		n += len(v) + 16
	}
	return int64(n)
}

// age returns the current age of the response at now (RFC 9111, Section
// 4.2.3): the corrected initial age plus the time it has been stored.
func (r *Response) age(now time.Time) time.Duration {
	resident := now.Sub(r.storedAt)
	if resident < 0 {
		resident = 0
	}
	return r.initialAge + resident
}

func (r *Response) shared() bool  { return r.flags&flagShared != 0 }
func (r *Response) noStale() bool { return r.flags&flagNoStale != 0 }
func (r *Response) noCache() bool { return r.flags&flagNoCache != 0 }

// validatable reports whether the origin can be asked whether the stored
// response is still current (RFC 9111, Section 4.3.1): it has an ETag or
// a Last-Modified date.
func (r *Response) validatable() bool {
	if r.kind != kindResponse {
		return false
	}
	if r.etag != "" {
		return true
	}
	_, ok := headerDate(r.header["Last-Modified"])
	return ok
}

// bodyAllowed reports whether a response with status may carry a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// fields of a 304 response that a cache sends from the stored response (RFC
// 9110, Section 15.4.5), plus Last-Modified.
var notModifiedFields = [...]string{
	"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary", "Last-Modified",
}

// finish validates a record and derives its unencoded fields. It is called
// on every record built or decoded.
func (r *Response) finish() error {
	switch r.kind {
	case kindPass:
		if r.status != 0 || len(r.header) != 0 || len(r.body) != 0 || len(r.vary) != 0 || len(r.tags) != 0 {
			return fmt.Errorf("%w: pass record with response fields", ErrMalformed)
		}
		if r.fresh < 0 || r.fresh > maxStoredDuration {
			return fmt.Errorf("%w: pass duration %v out of range", ErrMalformed, r.fresh)
		}
		return nil
	case kindGen, kindMoved:
		if r.status != 0 || len(r.header) != 0 || len(r.body) != 0 || len(r.vary) != 0 || len(r.tags) != 0 {
			return fmt.Errorf("%w: kind %d record with response fields", ErrMalformed, r.kind)
		}
		return nil
	case kindVary:
		if r.status != 0 || len(r.header) != 0 || len(r.body) != 0 || len(r.tags) != 0 {
			return fmt.Errorf("%w: vary record with response fields", ErrMalformed)
		}
		if len(r.vary) == 0 || len(r.vary) > maxSpecNames {
			return fmt.Errorf("%w: vary record with %d names", ErrMalformed, len(r.vary))
		}
		for i, v := range r.vary {
			if !validFieldName(v) || (i > 0 && r.vary[i-1] >= v) {
				return fmt.Errorf("%w: vary names not valid, sorted and unique", ErrMalformed)
			}
		}
		return nil
	case kindResponse:
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, r.kind)
	}
	if r.status < 100 || r.status > 999 {
		return fmt.Errorf("%w: status %d", ErrMalformed, r.status)
	}
	if r.flags&^flagsKnown != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrMalformed, r.flags)
	}
	if len(r.vary) != 0 {
		return fmt.Errorf("%w: response record with vary names", ErrMalformed)
	}
	for _, d := range [...]time.Duration{r.initialAge, r.fresh, r.swr, r.sie} {
		if d < 0 || d > maxStoredDuration {
			return fmt.Errorf("%w: duration %v out of range", ErrMalformed, d)
		}
	}
	if len(r.tags) > maxTags {
		return fmt.Errorf("%w: %d tags", ErrMalformed, len(r.tags))
	}
	for i := range r.tags {
		t := &r.tags[i]
		if !validTag(t.name) || (i > 0 && r.tags[i-1].name >= t.name) {
			return fmt.Errorf("%w: tags not valid, sorted and unique", ErrMalformed)
		}
		t.key = tagKey(t.name)
	}
	if r.header == nil {
		r.header = http.Header{}
	}
	if len(r.header) > maxHeaderFields {
		return fmt.Errorf("%w: %d header fields", ErrMalformed, len(r.header))
	}
	for k, vs := range r.header {
		if !validFieldName(k) || len(vs) > maxFieldValues {
			return fmt.Errorf("%w: header field %q", ErrMalformed, k)
		}
		for _, v := range vs {
			if !validFieldValue(v) {
				return fmt.Errorf("%w: value of header field %q", ErrMalformed, k)
			}
		}
	}
	// Fields computed per answer are never stored.
	delete(r.header, "Age")
	delete(r.header, "Cache-Status")
	if bodyAllowed(r.status) {
		r.header["Content-Length"] = []string{strconv.Itoa(len(r.body))}
	} else {
		delete(r.header, "Content-Length")
		if len(r.body) != 0 {
			return fmt.Errorf("%w: body with status %d", ErrMalformed, r.status)
		}
	}

	names := make([]string, 0, len(r.header))
	for k := range r.header {
		names = append(names, k)
	}
	slices.Sort(names)
	r.fields = make([]field, len(names))
	for i, k := range names {
		vs := slices.Clip(r.header[k])
		r.header[k] = vs
		r.fields[i] = field{k, vs}
	}
	r.notModified = r.notModified[:0]
	for _, k := range notModifiedFields {
		if vs, ok := r.header[k]; ok {
			r.notModified = append(r.notModified, field{k, vs})
		}
	}
	r.etag = ""
	if vs := r.header["Etag"]; len(vs) == 1 {
		if tag, _, ok := parseETag(vs[0]); ok {
			r.etag = tag
		}
	}
	r.validator = time.Time{}
	for _, k := range [...]string{"Last-Modified", "Date"} {
		if vs := r.header[k]; len(vs) > 0 {
			if t, ok := parseHTTPDate(vs[0]); ok {
				r.validator = t
				break
			}
		}
	}
	return nil
}

// validFieldName reports whether s is an RFC 9110 token of bounded length.
func validFieldName(s string) bool {
	if s == "" || len(s) > maxFieldNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validFieldValue reports whether s is a field value that cannot split a
// response: no CR, LF or NUL, bounded length.
func validFieldValue(s string) bool {
	return len(s) <= maxFieldValueLen && !strings.ContainsAny(s, "\r\n\x00")
}

// validTag reports whether s is usable as a surrogate key: visible ASCII
// without spaces, bounded length.
func validTag(s string) bool {
	if s == "" || len(s) > maxTagLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// parseETag parses an entity-tag: its opaque-tag (with quotes) and whether
// it is weak.
func parseETag(s string) (tag string, weak bool, ok bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "W/") {
		weak, s = true, s[2:]
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' || strings.IndexByte(s[1:len(s)-1], '"') >= 0 {
		return "", false, false
	}
	return s, weak, true
}

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
