package middleware

import (
	"net/http"
	"strings"
)

// Surrogate-Control (W3C Edge Architecture 1.0, a Note of 2001; read by
// Fastly, Akamai, Varnish and Squid), with WithSurrogateControl: the
// directives an origin gives the surrogates (reverse proxies acting for
// it) in front of it, ahead of Cache-Control. A directive may be targeted
// at one surrogate by its device token ("max-age=60;tiercache"); a
// surrogate names its token to the origin in the Surrogate-Capability
// request field ("tiercache=\"Surrogate/1.0\"").
//
// What this cache reads, for its token:
//
//   - the directives targeted at its token if there is any, else the
//     untargeted ones; directives targeted at other tokens never apply;
//   - max-age=N (N seconds of freshness) and max-age=N+M (M more seconds
//     in which the stale response may answer when the origin fails, as
//     stale-if-error; the narrower of the readings surrogates give it);
//     no-store; stale-while-revalidate=N and stale-if-error=N, which
//     Fastly reads there too. Names are case-insensitive.
//   - no-store-remote is for remote surrogates (a CDN far from the
//     origin); the middleware runs in the origin's process, so it does not
//     apply (Squid reads it the same way unless told it is remote).
//     content="..." (processing such as ESI) is not a caching directive.
//
// The field decides when it gives this cache max-age or no-store; then
// Cache-Control and Expires are ignored. A field that gives neither, or
// that this cache cannot read (a space around "=", an unterminated quoted
// string, a bad argument), is ignored as if absent.

// surrogateCapability is the Surrogate-Capability member naming a device
// token with the capability this cache has.
func surrogateCapability(token string) string { return token + `="Surrogate/1.0"` }

// parseSurrogate parses the Surrogate-Control lines for the device token.
// ok is false when the field does not decide for this cache (see above).
func parseSurrogate(lines []string, token string) (d directives, ok bool) {
	var mine, untargeted []string
	for _, line := range lines {
		members, valid := surrogateMembers(line)
		if !valid {
			return d, false
		}
		for _, m := range members {
			dir, target, targeted := cutTarget(m)
			switch {
			case !targeted:
				untargeted = append(untargeted, dir)
			case strings.EqualFold(target, token):
				mine = append(mine, dir)
			}
		}
	}
	if len(mine) == 0 {
		mine = untargeted
	}
	d = noDirectives
	decides := false
	for _, m := range mine {
		name, arg, hasArg := strings.Cut(m, "=")
		if !validFieldName(name) || (hasArg && (arg == "" || arg[0] == ' ' || arg[0] == '\t')) {
			return d, false
		}
		switch strings.ToLower(name) {
		case "max-age":
			fresh, grace, extended := strings.Cut(arg, "+")
			d.maxAge = setDelta(d.maxAge, fresh)
			if extended {
				d.staleIfError = setDelta(d.staleIfError, grace)
			}
			decides = true
		case "no-store":
			if hasArg {
				return d, false
			}
			d.noStore, decides = true, true
		case "stale-while-revalidate":
			d.staleWhileRevalidate = setDelta(d.staleWhileRevalidate, arg)
		case "stale-if-error":
			d.staleIfError = setDelta(d.staleIfError, arg)
		}
	}
	if d.maxAge == invalid || d.staleIfError == invalid || d.staleWhileRevalidate == invalid {
		// A bad or contradictory argument: such a response is stale
		// (RFC 9111, Section 4.2.1), as with Cache-Control.
		d.maxAge = invalid
	}
	return d, decides
}

// surrogateMembers splits a Surrogate-Control line into its members,
// trimmed, without empty ones, honouring quoted strings. valid is false
// for an unterminated string.
func surrogateMembers(line string) (members []string, valid bool) {
	start, quoted := 0, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			if m := strings.Trim(line[start:i], " \t"); m != "" {
				members = append(members, m)
			}
			start = i + 1
		}
	}
	if quoted {
		return nil, false
	}
	if m := strings.Trim(line[start:], " \t"); m != "" {
		members = append(members, m)
	}
	return members, true
}

// cutTarget splits a member into its directive and the device token after
// its last ";" outside a quoted string.
func cutTarget(m string) (dir, target string, targeted bool) {
	cut, quoted := -1, false
	for i := 0; i < len(m); i++ {
		switch c := m[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			cut = i
		}
	}
	if cut < 0 {
		return m, "", false
	}
	return strings.TrimRight(m[:cut], " \t"), strings.Trim(m[cut+1:], " \t"), true
}

// addCapability appends this cache's Surrogate-Capability member to h, the
// header of a request to the origin that the middleware owns (never the
// client's), after what earlier surrogates sent.
func (m *Middleware) addCapability(h http.Header) {
	if prev := h["Surrogate-Capability"]; len(prev) > 0 {
		h["Surrogate-Capability"] = []string{strings.Join(prev, ", ") + ", " + m.capability}
		return
	}
	h["Surrogate-Capability"] = []string{m.capability}
}
