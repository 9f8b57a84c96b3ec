package middleware

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// capture is the ResponseWriter the origin handler writes to when its
// response may be stored. It buffers the status, header and body. With a
// client (the request that runs the origin for everyone), it switches to
// passthrough when the response cannot be stored anyway: the body outgrows
// the cap, the connection is upgraded or hijacked, or the handler flushes
// a response that may not be stored (or an event stream); from then on
// everything goes to the client as written, and the response is not
// stored. A flush of a response that may be stored is held back: the
// response is stored once its whole body has arrived (httputil.ReverseProxy
// flushes every chunk of a body without Content-Length). Without a client
// (a background refresh), a response over the cap is discarded.
//
// Unwrap returns the client's writer, so http.ResponseController reaches
// SetReadDeadline, SetWriteDeadline and EnableFullDuplex; Flush and Hijack
// are implemented here to switch modes first.
//
// A capture is used by one handler goroutine, like any ResponseWriter.
type capture struct {
	client   http.ResponseWriter // nil in background refreshes
	header   http.Header
	snapshot http.Header // header when the status was written
	status   int
	wrote    bool
	body     []byte
	max      int
	// started is called once, just before the client's header is written on
	// a switch to passthrough, with the client's header map.
	started func(h http.Header)
	// storable tells, at a flush, whether the response may be stored, so
	// the flush is held back; nil streams on every flush.
	storable func(status int, h http.Header) bool

	calledAt time.Time // when the handler was called (the cache's clock)

	streaming bool // passthrough to the client started
	flushed   bool // the handler flushed (background: nothing was sent)
	hijacked  bool
	overflow  bool // body over max (background: the rest was discarded)
}

func newCapture(client http.ResponseWriter, max int, started func(http.Header)) *capture {
	return &capture{client: client, header: make(http.Header), max: max, started: started}
}

func (c *capture) Header() http.Header { return c.header }

func checkWriteHeaderCode(code int) {
	// Like net/http: a code outside 100-999 is a programming error.
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
}

func (c *capture) WriteHeader(code int) {
	checkWriteHeaderCode(code)
	if c.hijacked {
		return
	}
	if c.wrote {
		if c.streaming {
			c.client.WriteHeader(code) // net/http logs the superfluous call
		}
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational responses (103 Early Hints) go out at once, with
		// the fields set so far; those must not stay in the client's
		// header map, where net/http would send them again with the final
		// response (httputil.ReverseProxy clears its own map after a 1xx,
		// but only ours).
		if c.client != nil {
			h := c.client.Header()
			saved := h.Clone()
			copyHeader(h, c.header)
			c.client.WriteHeader(code)
			clear(h)
			copyHeader(h, saved)
		}
		return
	}
	c.status, c.wrote = code, true
	c.snapshot = c.header.Clone()
	if code == http.StatusSwitchingProtocols {
		c.flushed = true
		c.stream()
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.hijacked {
		return 0, http.ErrHijacked
	}
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if c.streaming {
		return c.client.Write(p)
	}
	if c.overflow {
		return len(p), nil
	}
	if len(c.body)+len(p) > c.max {
		c.overflow = true
		if c.client != nil {
			c.stream()
			return c.client.Write(p)
		}
		c.body = nil
		return len(p), nil
	}
	c.body = append(c.body, p...)
	return len(p), nil
}

// WriteString avoids a copy for io.WriteString.
func (c *capture) WriteString(s string) (int, error) {
	if !c.streaming && !c.hijacked && c.wrote && !c.overflow && len(c.body)+len(s) <= c.max {
		c.body = append(c.body, s...)
		return len(s), nil
	}
	return c.Write([]byte(s))
}

// stream switches to passthrough: the status, header and buffered body go
// to the client now.
func (c *capture) stream() {
	if c.streaming || c.client == nil {
		return
	}
	c.streaming = true
	h := c.client.Header()
	copyHeader(h, c.header)
	if c.started != nil {
		c.started(h)
	}
	c.client.WriteHeader(c.status)
	if len(c.body) > 0 {
		c.client.Write(c.body) //nolint:errcheck // the handler sees later errors
	}
	c.body = nil
}

func (c *capture) Flush() { _ = c.FlushError() }

// FlushError switches to passthrough and flushes the client (a streamed
// response is never stored), unless the response may be stored: then the
// flush is held back until the handler returns.
func (c *capture) FlushError() error {
	if c.hijacked {
		return http.ErrHijacked
	}
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	c.flushed = true
	if c.client == nil {
		return nil
	}
	if !c.streaming && c.storable != nil && c.storable(c.status, c.snapshot) {
		return nil // buffered: the whole body goes out (and is stored) at the end
	}
	c.stream()
	return http.NewResponseController(c.client).Flush()
}

// Hijack hands the connection to the handler; the response is not stored.
func (c *capture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if c.client == nil {
		return nil, nil, fmt.Errorf("middleware: hijacking a background refresh: %w", http.ErrNotSupported)
	}
	conn, rw, err := http.NewResponseController(c.client).Hijack()
	if err == nil {
		c.hijacked = true
	}
	return conn, rw, err
}

// Unwrap returns the client's ResponseWriter (nil in background refreshes).
func (c *capture) Unwrap() http.ResponseWriter { return c.client }

// passedThrough reports whether the client already has the response (or
// the connection).
func (c *capture) passedThrough() bool { return c.streaming || c.hijacked }

// finish completes a passthrough after the handler returned: trailers the
// handler set meanwhile reach the client's header map, where net/http
// looks for them.
func (c *capture) finish() {
	if !c.streaming {
		return
	}
	h := c.client.Header()
	declared := headerTokens(c.header["Trailer"])
	for k, vs := range c.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			h[k] = vs
			continue
		}
		for _, d := range declared {
			if http.CanonicalHeaderKey(d) == k {
				h[k] = vs
			}
		}
	}
}

// copyHeader sets every field of src in dst.
func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = vs
	}
}

// invalidator wraps the writer of an unsafe request (POST, PUT, ...): when
// the status goes out and is 2xx or 3xx, it first invalidates the URL, so a
// client that reads the response and then the URL cannot get the old copy.
type invalidator struct {
	w    http.ResponseWriter
	done bool
	fn   func(status int)
}

func (iv *invalidator) Header() http.Header { return iv.w.Header() }

func (iv *invalidator) decide(code int) {
	if !iv.done && code >= 200 {
		iv.done = true
		iv.fn(code)
	}
}

func (iv *invalidator) WriteHeader(code int) {
	checkWriteHeaderCode(code)
	iv.decide(code)
	iv.w.WriteHeader(code)
}

func (iv *invalidator) Write(p []byte) (int, error) {
	iv.decide(http.StatusOK)
	return iv.w.Write(p)
}

func (iv *invalidator) Flush() { _ = iv.FlushError() }

func (iv *invalidator) FlushError() error {
	iv.decide(http.StatusOK)
	return http.NewResponseController(iv.w).Flush()
}

func (iv *invalidator) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	iv.done = true // the outcome is unknown: leave the cache alone
	return http.NewResponseController(iv.w).Hijack()
}

func (iv *invalidator) Unwrap() http.ResponseWriter { return iv.w }
