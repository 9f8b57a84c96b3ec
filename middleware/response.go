package middleware

import (
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
