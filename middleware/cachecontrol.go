package middleware

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// Absent or unusable delta-seconds arguments.
const (
	unset   int64 = -1 // directive absent
	invalid int64 = -2 // directive present with a bad or repeated argument
)

// maxDelta is the largest delta-seconds value kept; larger ones are capped
// (RFC 9111, Section 1.2.2).
const maxDelta = 1 << 31

// directives holds the Cache-Control directives of a request or response
// that the middleware understands. Unknown directives are ignored (RFC 9111,
// Section 5.2.3).
type directives struct {
	noStore, noCache, private, public bool
	mustRevalidate, proxyRevalidate   bool
	mustUnderstand                    bool
	onlyIfCached                      bool

	// delta-seconds: unset, invalid, or >= 0.
	maxAge, sMaxAge, minFresh int64
	staleWhileRevalidate      int64
	staleIfError              int64

	// Field names of the qualified forms private="..." and no-cache="...",
	// canonicalized. Those fields are not stored; the response is.
	privateFields, noCacheFields []string
}

// parseCacheControl parses every Cache-Control field line of h.
func parseCacheControl(lines []string) directives {
	d := directives{maxAge: unset, sMaxAge: unset, minFresh: unset, staleWhileRevalidate: unset, staleIfError: unset}
	for _, line := range lines {
		for len(line) > 0 {
			var name, arg string
			var quoted bool
			name, arg, quoted, line = nextDirective(line)
			if name == "" {
				continue
			}
			switch strings.ToLower(name) {
			case "no-store":
				d.noStore = true
			case "no-cache":
				if quoted && arg != "" {
					d.noCacheFields = appendFields(d.noCacheFields, arg)
				} else {
					d.noCache = true
				}
			case "private":
				if quoted && arg != "" {
					d.privateFields = appendFields(d.privateFields, arg)
				} else {
					d.private = true
				}
			case "public":
				d.public = true
			case "must-revalidate":
				d.mustRevalidate = true
			case "proxy-revalidate":
				d.proxyRevalidate = true
			case "must-understand":
				d.mustUnderstand = true
			case "only-if-cached":
				d.onlyIfCached = true
			case "max-age":
				d.maxAge = setDelta(d.maxAge, arg)
			case "s-maxage":
				d.sMaxAge = setDelta(d.sMaxAge, arg)
			case "min-fresh":
				d.minFresh = setDelta(d.minFresh, arg)
			case "stale-while-revalidate":
				d.staleWhileRevalidate = setDelta(d.staleWhileRevalidate, arg)
			case "stale-if-error":
				d.staleIfError = setDelta(d.staleIfError, arg)
			}
		}
	}
	return d
}

// setDelta records a delta-seconds argument. A repeated directive with a
// different value, or an argument that is not delta-seconds, is invalid
// (RFC 9111, Section 4.2.1: such a response is considered stale).
func setDelta(prev int64, arg string) int64 {
	v := parseDelta(arg)
	switch {
	case prev == unset:
		return v
	case prev == v:
		return v
	}
	return invalid
}

// parseDelta parses delta-seconds, capping it at maxDelta.
func parseDelta(s string) int64 {
	if s == "" {
		return invalid
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return invalid
		}
		if v < maxDelta {
			v = v*10 + int64(c-'0')
		}
	}
	return min(v, maxDelta)
}

// nextDirective splits the first directive off a Cache-Control list: its
// name, its argument (unquoted), whether the argument was quoted, and the
// rest of the list.
func nextDirective(s string) (name, arg string, quoted bool, rest string) {
	s = strings.TrimLeft(s, " \t,")
	i := 0
	for i < len(s) && s[i] != '=' && s[i] != ',' {
		i++
	}
	name = strings.TrimSpace(s[:i])
	if i == len(s) || s[i] == ',' {
		return name, "", false, s[i:]
	}
	s = strings.TrimLeft(s[i+1:], " \t")
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		j := 1
		for ; j < len(s); j++ {
			c := s[j]
			if c == '\\' && j+1 < len(s) {
				j++
				b.WriteByte(s[j])
				continue
			}
			if c == '"' {
				j++
				break
			}
			b.WriteByte(c)
		}
		rest = s[j:]
		if k := strings.IndexByte(rest, ','); k >= 0 {
			rest = rest[k:]
		} else {
			rest = ""
		}
		return name, b.String(), true, rest
	}
	j := strings.IndexByte(s, ',')
	if j < 0 {
		j = len(s)
	}
	return name, strings.TrimSpace(s[:j]), false, s[j:]
}

// appendFields appends the canonicalized field names of a comma-separated
// list.
func appendFields(dst []string, list string) []string {
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			dst = append(dst, textproto.CanonicalMIMEHeaderKey(f))
		}
	}
	return dst
}

// headerTokens returns the comma-separated tokens of every line of a header
// field, trimmed, skipping empty ones.
func headerTokens(lines []string) []string {
	var out []string
	for _, line := range lines {
		for t := range strings.SplitSeq(line, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// hopByHop lists the hop-by-hop fields a cache must not store (RFC 9110,
// Section 7.6.1), plus Proxy-Connection and Keep-Alive in their legacy use.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop fields of h, including those named
// by its Connection field.
func removeHopByHop(h http.Header) {
	for _, name := range headerTokens(h["Connection"]) {
		h.Del(name)
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
}

// responseDirectives returns the caching directives of a response for this
// cache: those of the first targeted field that decides, in the order
// WithTargetedHeader's field (if set; RFC 9213), Surrogate-Control (with
// WithSurrogateControl; surrogate.go), CDN-Cache-Control (RFC 9213); else
// Cache-Control. An RFC 9213 field decides when it has a valid, non-empty
// value. targeted reports that a targeted field was used: Cache-Control
// and Expires are then ignored.
func (m *Middleware) responseDirectives(h http.Header) (d directives, targeted bool) {
	for _, f := range m.targets {
		lines := h[f.name]
		if len(lines) == 0 {
			continue
		}
		var ok bool
		if f.surrogate {
			d, ok = parseSurrogate(lines, m.cfg.surrogateToken)
		} else {
			d, ok = parseTargeted(lines)
		}
		if ok {
			return d, true
		}
	}
	return parseCacheControl(h["Cache-Control"]), false
}

// targetField is a response field with caching directives for this cache
// ahead of Cache-Control.
type targetField struct {
	name      string // canonical
	surrogate bool   // Surrogate-Control (parseSurrogate); else an RFC 9213 field (parseTargeted)
}

// parseTargeted parses a targeted cache-control field (RFC 9213: a
// structured-field dictionary of the Cache-Control directives). ok is
// false when it holds no directive, is not a valid dictionary, or gives a
// directive this cache knows a value of the wrong type (RFC 9213, Section
// 2.1: max-age="10000" is a string, not an integer); the field is then
// ignored, as if absent. The types: the delta-seconds directives take a
// non-negative integer; private and no-cache are true or a string (the
// field-name list); the other known directives are booleans, where ?0
// means the directive is absent. Unknown directives take any item.
func parseTargeted(lines []string) (d directives, ok bool) {
	var b strings.Builder
	n := 0
	for _, line := range lines {
		members, valid := sfMembers(line)
		if !valid {
			return d, false
		}
		for _, m := range members {
			key, val, hasVal := strings.Cut(m, "=")
			if !sfKey(key) {
				return d, false
			}
			val, _, _ = strings.Cut(val, ";") // parameters: allowed, ignored
			val = strings.TrimSpace(val)
			if hasVal && !sfItem(val) {
				return d, false
			}
			n++
			switch targetedType(key) {
			case sfTypeInteger:
				if !hasVal || val[0] == '-' || val[0] == '"' || val[0] == '?' || parseDelta(val) < 0 {
					return d, false
				}
			case sfTypeBoolean:
				switch {
				case !hasVal || val == "?1":
					val, hasVal = "", false
				case val == "?0":
					continue
				default:
					return d, false
				}
			case sfTypeBooleanOrString:
				switch {
				case !hasVal || val == "?1":
					val, hasVal = "", false
				case val == "?0":
					continue
				case val[0] != '"':
					return d, false
				}
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(key)
			if hasVal {
				b.WriteByte('=')
				b.WriteString(val)
			}
		}
	}
	if n == 0 {
		return d, false
	}
	return parseCacheControl([]string{b.String()}), true
}

// Value types of the directives in a targeted field.
const (
	sfTypeAny uint8 = iota
	sfTypeInteger
	sfTypeBoolean
	sfTypeBooleanOrString
)

func targetedType(key string) uint8 {
	switch key {
	case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
		return sfTypeInteger
	case "no-store", "public", "must-revalidate", "proxy-revalidate", "must-understand", "immutable":
		return sfTypeBoolean
	case "private", "no-cache":
		return sfTypeBooleanOrString
	}
	return sfTypeAny
}

// sfMembers splits a structured-field dictionary line into its members,
// trimmed, honouring quoted strings. valid is false for an empty member
// or an unterminated string.
func sfMembers(line string) (members []string, valid bool) {
	start, quoted := 0, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			m := strings.TrimSpace(line[start:i])
			if m == "" {
				return nil, false
			}
			members = append(members, m)
			start = i + 1
		}
	}
	if quoted {
		return nil, false
	}
	m := strings.TrimSpace(line[start:])
	if m == "" {
		return nil, false
	}
	return append(members, m), true
}

// sfKey reports whether s is a structured-field dictionary key: lower-case
// letter or "*", then lower-case letters, digits, "_-.*".
func sfKey(s string) bool {
	if s == "" || !(s[0] == '*' || ('a' <= s[0] && s[0] <= 'z')) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || strings.IndexByte("_-.*", c) >= 0) {
			return false
		}
	}
	return true
}

// sfItem reports whether s is a bare item this cache understands in a
// targeted field: an integer, a token or a quoted string (parameters are
// allowed and ignored).
func sfItem(s string) bool {
	s, _, _ = strings.Cut(s, ";")
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return false
	case s[0] == '"':
		return len(s) >= 2 && s[len(s)-1] == '"'
	case s[0] == '-' || ('0' <= s[0] && s[0] <= '9'):
		_, err := strconv.ParseInt(s, 10, 64)
		return err == nil
	}
	return sfToken(s) || s == "?0" || s == "?1"
}
