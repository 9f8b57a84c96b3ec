package middleware

import (
	"slices"
	"strings"
)

// Normal form of the selecting header fields (RFC 9111, Section 4.1): two
// requests select the same stored response when their values of the
// fields a response's Vary names differ only in ways that cannot change
// the meaning, so the variant key is built from a normal form of each
// value:
//
//   - every field: lines are combined into one list (RFC 9110, Section
//     5.3), the whitespace around list commas is removed and empty list
//     members are dropped (Section 5.6.1), outside quoted strings and
//     comments; so "1, 2", "1,2", " 1 ,2 " and two lines "1" and "2" are
//     one value. The fields that are not lists (User-Agent, Cookie, ...)
//     are only combined as before, never otherwise touched.
//   - Accept-Encoding, Accept-Language, Accept-Charset and TE, whose
//     members are case-insensitive tokens with a weight (Section 12.4):
//     lower case, no whitespace around ";" and "=", the weight in its
//     shortest form (q=1 and q=1.000 are no weight, q=0.50 is q=0.5), and
//     the members ordered by weight, highest first. Members of equal
//     weight keep their order: servers commonly take the first of equal
//     ones as preferred (Go's language matcher does), so "en, de" and
//     "de, en" stay different variants.
//
// Nothing else is merged: different members, weights or parameters always
// make different keys. A value that does not parse as such a list (a
// quoted string, an invalid weight) gets the generic form only.

// notLists are request fields whose value is not a comma-separated list
// (commas in them are data): their lines are combined, nothing more.
var notLists = map[string]bool{
	"Authorization": true, "Cookie": true, "Date": true, "From": true, "Host": true,
	"If-Modified-Since": true, "If-Range": true, "If-Unmodified-Since": true,
	"Proxy-Authorization": true, "Referer": true, "User-Agent": true,
}

// weighted are the request fields normalised as weighted token lists.
var weighted = map[string]bool{
	"Accept-Charset": true, "Accept-Encoding": true, "Accept-Language": true, "Te": true,
}

// selectingValue returns the normal form of the lines vs of the request
// field name (canonical) for the variant key.
func selectingValue(name string, vs []string) string {
	if notLists[name] {
		if len(vs) == 1 {
			return vs[0]
		}
		return strings.Join(vs, ", ")
	}
	w := weighted[name]
	if len(vs) == 1 && normalAlready(vs[0], w) {
		return vs[0] // the common case allocates nothing
	}
	members := listMembers(vs)
	if w {
		if sorted, ok := weightedMembers(members); ok {
			members = sorted
		}
	}
	return strings.Join(members, ",")
}

// normalAlready reports whether v is already in its normal form, judged
// quickly: no whitespace, no empty member, and for a weighted field no
// upper case and no parameters.
func normalAlready(v string, weighted bool) bool {
	if v == "" || v[0] == ',' || v[len(v)-1] == ',' {
		return v == ""
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == ' ' || c == '\t':
			return false
		case c == ',' && v[i+1] == ',':
			return false
		case weighted && (c == ';' || ('A' <= c && c <= 'Z')):
			return false
		}
	}
	return true
}

// listMembers splits the lines of a list field into members, trimmed of
// whitespace, without empty ones; commas inside quoted strings and
// comments (parentheses) do not split.
func listMembers(vs []string) []string {
	var out []string
	for _, line := range vs {
		start, quoted, depth := 0, false, 0
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case quoted && c == '\\':
				i++
			case c == '"' && depth == 0:
				quoted = !quoted
			case quoted:
			case c == '(':
				depth++
			case c == ')' && depth > 0:
				depth--
			case c == ',' && depth == 0:
				if m := strings.Trim(line[start:i], " \t"); m != "" {
					out = append(out, m)
				}
				start = i + 1
			}
		}
		if m := strings.Trim(line[start:], " \t"); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// weightedMembers normalises the members of a weighted list (see above),
// ordered by weight, highest first, stable. ok is false when a member does
// not parse (a quoted string, a comment, an invalid weight).
func weightedMembers(members []string) (out []string, ok bool) {
	type member struct {
		text string
		q    int // weight in thousandths
	}
	ms := make([]member, 0, len(members))
	for _, m := range members {
		if strings.ContainsAny(m, `"()`) {
			return nil, false
		}
		parts := strings.Split(m, ";")
		var b strings.Builder
		b.WriteString(strings.ToLower(strings.Trim(parts[0], " \t")))
		q := 1000
		for _, p := range parts[1:] {
			k, v, hasV := strings.Cut(p, "=")
			k = strings.ToLower(strings.Trim(k, " \t"))
			v = strings.Trim(v, " \t")
			if k == "" {
				return nil, false
			}
			if k == "q" {
				var valid bool
				if q, valid = parseQValue(v); !valid || !hasV {
					return nil, false
				}
				continue
			}
			b.WriteByte(';')
			b.WriteString(k)
			if hasV {
				b.WriteByte('=')
				b.WriteString(strings.ToLower(v))
			}
		}
		if q < 1000 {
			b.WriteString(";q=")
			b.WriteString(formatQValue(q))
		}
		ms = append(ms, member{b.String(), q})
	}
	slices.SortStableFunc(ms, func(a, b member) int { return b.q - a.q })
	out = make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.text
	}
	return out, true
}

// parseQValue parses a weight (RFC 9110, Section 12.4.2): "0" or "1",
// optionally with up to three decimals ("1" only with zeros), in
// thousandths.
func parseQValue(s string) (int, bool) {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	q := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return q, true
	}
	if s[1] != '.' || len(s) > 5 {
		return 0, false
	}
	scale := 100
	for i := 2; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' || (q == 1000 && d != '0') {
			return 0, false
		}
		q += int(d-'0') * scale
		scale /= 10
	}
	return q, true
}

// formatQValue writes a weight below 1 in thousandths in its shortest form
// ("0", "0.5", "0.25", "0.125").
func formatQValue(q int) string {
	if q <= 0 {
		return "0"
	}
	b := []byte{'0', '.', byte('0' + q/100), byte('0' + q/10%10), byte('0' + q%10)}
	return strings.TrimRight(string(b), "0")
}
