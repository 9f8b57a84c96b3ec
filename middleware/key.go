package middleware

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Keys in the cache (all in the one tiered.Cache the middleware is given):
//
//	u:<scheme>://<host><path>[?<query>]    a URL's stored response, or its vary spec
//	<url key>\x00v<spec id>{\x00<value>}   a variant selected by a vary spec
//	s:<record id>:<key>                    the successor of a stale record
//	t:<tag>                                a tag's generation
//	e                                      the purge epoch
//
// Keys longer than maxKeyLen keep a prefix and end in the SHA-256 of the
// whole key, so they stay under the L2 store's key limit.
const (
	maxKeyLen  = 512
	keepPrefix = 200
	epochKey   = "e"
)

// hashLong shortens a key over maxKeyLen to a prefix plus its SHA-256.
func hashLong(k string) string {
	if len(k) <= maxKeyLen {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return k[:keepPrefix] + "#" + hex.EncodeToString(sum[:])
}

func tagKey(tag string) string { return "t:" + tag }

// successorKey is where the record that replaces the stale record id under
// key is loaded: every node that finds the same stale record loads the same
// successor key, so the tiered lease makes one origin call per cluster.
func successorKey(key string, id uint64) string {
	b := make([]byte, 0, len(key)+20)
	b = append(b, "s:"...)
	b = strconv.AppendUint(b, id, 16)
	b = append(b, ':')
	b = append(b, key...)
	return hashLong(string(b))
}

// variantKey is the key of the variant of urlKey selected by the values of
// spec's fields in h, each in its normal form (vary.go).
func variantKey(urlKey string, spec *Response, h http.Header) string {
	b := make([]byte, 0, len(urlKey)+64)
	b = append(b, urlKey...)
	b = append(b, "\x00v"...)
	b = strconv.AppendUint(b, spec.id, 16)
	for _, name := range spec.vary {
		b = append(b, 0)
		if prefix, ok := strings.CutSuffix(name, "*"); ok {
			b = appendPrefixed(b, prefix, h)
			continue
		}
		vs, ok := h[name]
		if !ok {
			b = append(b, '-')
			continue
		}
		v := selectingValue(name, vs)
		b = append(b, '=')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return hashLong(string(b))
}

// appendPrefixed appends the fields of h whose names start with prefix,
// sorted by name, each as name=len:value; "-" when there is none.
func appendPrefixed(b []byte, prefix string, h http.Header) []byte {
	var names []string
	for k := range h {
		if strings.HasPrefix(k, prefix) {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return append(b, '-')
	}
	slices.Sort(names)
	for _, k := range names {
		v := selectingValue(k, h[k])
		b = append(b, '=')
		b = append(b, k...)
		b = append(b, '=')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return b
}

// requestURL is what the middleware derives from a request's URL.
type requestURL struct {
	key string // the URL key
	// rawQuery is the query the handler sees when ignored parameters were
	// dropped (stripped is then true).
	rawQuery string
	stripped bool
}

// schemeOf returns the scheme the client used: from the trusted scheme
// header if one is configured and present, else https when the connection
// is TLS and http otherwise. Never from the request target: over plain
// HTTP, "GET https://victim/login" must not be keyed as https. ok is false
// when the scheme header holds something other than http or https.
func (m *Middleware) schemeOf(r *http.Request) (scheme string, ok bool) {
	if name := m.cfg.schemeHeader; name != "" {
		if vs := r.Header[name]; len(vs) > 0 {
			switch {
			case len(vs) == 1 && strings.EqualFold(vs[0], "https"):
				return "https", true
			case len(vs) == 1 && strings.EqualFold(vs[0], "http"):
				return "http", true
			}
			return "", false
		}
	}
	if r.TLS != nil {
		return "https", true
	}
	return "http", true
}

// urlKey builds the URL key of a request. ok is false when the URL cannot be
// keyed safely (control characters, an unparsable query): such requests
// bypass the cache.
func (m *Middleware) urlKey(r *http.Request) (u requestURL, ok bool) {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	scheme, ok := m.schemeOf(r)
	if !ok {
		return u, false
	}
	return m.keyOf(scheme, host, r.URL.EscapedPath(), r.URL.RawQuery)
}

func (m *Middleware) keyOf(scheme, host, path, rawQuery string) (u requestURL, ok bool) {
	if host == "" || !plain(host) || strings.IndexByte(host, '/') >= 0 || !plain(path) || !plain(scheme) {
		return u, false
	}
	if path == "" {
		path = "/"
	}
	query, forHandler, stripped, ok := m.normalizeQuery(rawQuery)
	if !ok {
		return u, false
	}
	var buf [256]byte
	b := append(buf[:0], "u:"...)
	b = appendLower(b, scheme)
	b = append(b, "://"...)
	b = appendHost(b, host, scheme)
	b = append(b, path...)
	if query != "" {
		b = append(b, '?')
		b = append(b, query...)
	}
	u.key = hashLong(string(b))
	u.rawQuery, u.stripped = forHandler, stripped
	return u, true
}

// plain reports whether s has no control characters, spaces or non-ASCII
// bytes (an escaped path or a raw query never has).
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func appendLower(b []byte, s string) []byte {
	upper := false
	for i := 0; i < len(s) && !upper; i++ {
		upper = 'A' <= s[i] && s[i] <= 'Z'
	}
	if !upper {
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// appendHost appends host lower-cased and without the scheme's default port.
func appendHost(b []byte, host, scheme string) []byte {
	switch {
	case strings.EqualFold(scheme, "http") && strings.HasSuffix(host, ":80"):
		host = host[:len(host)-3]
	case strings.EqualFold(scheme, "https") && strings.HasSuffix(host, ":443"):
		host = host[:len(host)-4]
	}
	return appendLower(b, host)
}

// normalizeQuery returns the query as keyed (parameters sorted by decoded
// name, stable, so repeated names keep their order; ignored parameters and
// empty pairs dropped) and, when ignored parameters were dropped, the query
// the handler sees (the kept pairs in their original order). The common
// case (already sorted, nothing to drop) allocates nothing.
func (m *Middleware) normalizeQuery(raw string) (keyed, forHandler string, stripped, ok bool) {
	if raw == "" {
		return "", "", false, true
	}
	if !plain(raw) || strings.IndexByte(raw, '#') >= 0 {
		return "", "", false, false
	}
	// Fast path: every name plain (no escapes), sorted, none ignored, no
	// empty pair.
	fast := true
	prev := ""
	for rest := raw; ; {
		pair, tail, more := strings.Cut(rest, "&")
		name, _, _ := strings.Cut(pair, "=")
		if pair == "" || strings.ContainsAny(name, "%+") || name < prev || m.ignored(name) {
			fast = false
			break
		}
		prev = name
		if !more {
			break
		}
		rest = tail
	}
	if fast {
		return raw, "", false, true
	}

	type pair struct{ raw, name string }
	var pairs []pair
	dropped := false
	for p := range strings.SplitSeq(raw, "&") {
		if p == "" {
			continue
		}
		name, _, _ := strings.Cut(p, "=")
		if strings.ContainsAny(name, "%+") {
			n, err := url.QueryUnescape(name)
			if err != nil {
				return "", "", false, false
			}
			name = n
		}
		if m.ignored(name) {
			dropped = true
			continue
		}
		pairs = append(pairs, pair{p, name})
	}
	if dropped {
		kept := make([]string, len(pairs))
		for i, p := range pairs {
			kept[i] = p.raw
		}
		forHandler = strings.Join(kept, "&")
	}
	slices.SortStableFunc(pairs, func(a, b pair) int { return strings.Compare(a.name, b.name) })
	var sb strings.Builder
	for i, p := range pairs {
		if i > 0 {
			sb.WriteByte('&')
		}
		sb.WriteString(p.raw)
	}
	return sb.String(), forHandler, dropped, true
}

// ignored reports whether the query parameter name is dropped from keys.
func (m *Middleware) ignored(name string) bool {
	for _, p := range m.cfg.ignoredParams {
		if strings.HasSuffix(p, "*") {
			if strings.HasPrefix(name, p[:len(p)-1]) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// specNames returns the fields a vary spec for a response with the given
// Vary names selects on: those names plus the key headers, sorted, unique.
func (m *Middleware) specNames(vary []string) []string {
	out := make([]string, 0, len(vary)+len(m.cfg.keyHeaders))
	out = append(out, vary...)
	out = append(out, m.cfg.keyHeaders...)
	slices.Sort(out)
	return slices.Compact(out)
}
