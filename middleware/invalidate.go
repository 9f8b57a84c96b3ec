package middleware

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
)

// Invalidation: unsafe methods (RFC 9111, Section 4.4), Purge, PurgeTag and
// the tag generations a stored response is checked against.

// serveUnsafe runs a request with an unsafe method. A 2xx or 3xx status
// invalidates the request's URL and the same-host URLs in its Location and
// Content-Location fields on every node (RFC 9111, Section 4.4), before the
// status goes out.
func (h *handler) serveUnsafe(w http.ResponseWriter, r *http.Request) {
	m := h.m
	m.met.request(m.status.method.out)
	w.Header()["Cache-Status"] = m.status.method.field
	iv := &invalidator{w: w, fn: func(status int) {
		if status < 200 || status >= 400 || m.closed.Load() {
			return
		}
		m.invalidate(r, w.Header())
	}}
	h.next.ServeHTTP(iv, r)
	iv.decide(http.StatusOK)
}

// invalidate deletes the URL keys of r and of the same-host URLs named by
// the Location and Content-Location fields of header.
func (m *Middleware) invalidate(r *http.Request, header http.Header) {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	scheme, ok := m.schemeOf(r)
	if !ok {
		return
	}
	var keys []string
	if u, ok := m.keyOf(scheme, host, r.URL.EscapedPath(), r.URL.RawQuery); ok {
		keys = append(keys, u.key)
	}
	base := &url.URL{Scheme: scheme, Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	for _, f := range [...]string{"Location", "Content-Location"} {
		v := header.Get(f)
		if v == "" {
			continue
		}
		loc, err := base.Parse(v)
		if err != nil || !sameHost(loc.Host, host, scheme) {
			continue
		}
		if u, ok := m.keyOf(scheme, loc.Host, loc.EscapedPath(), loc.RawQuery); ok && (len(keys) == 0 || u.key != keys[0]) {
			keys = append(keys, u.key)
		}
	}
	if len(keys) == 0 {
		return
	}
	ctx := context.WithoutCancel(r.Context())
	if err := m.cache.Delete(ctx, keys...); err != nil {
		m.cfg.onError(ctx, fmt.Errorf("middleware: invalidating %s %s: %w", r.Method, r.URL, err))
		return
	}
	m.met.invalidated(reasonUnsafe, len(keys))
}

func sameHost(a, b, scheme string) bool {
	return string(appendHost(nil, a, scheme)) == string(appendHost(nil, b, scheme))
}

// Purge removes the stored responses of an absolute URL (every variant, GET
// and HEAD) from every node. Query parameters are normalized as in keys.
func (m *Middleware) Purge(ctx context.Context, rawURL string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%w: %q is not absolute", ErrInvalidURL, rawURL)
	}
	k, ok := m.keyOf(u.Scheme, u.Host, u.EscapedPath(), u.RawQuery)
	if !ok {
		return fmt.Errorf("%w: %q cannot be keyed", ErrInvalidURL, rawURL)
	}
	if err := m.cache.Delete(ctx, k.key); err != nil {
		return err
	}
	m.met.invalidated(reasonPurge, 1)
	return nil
}

// PurgeTag makes every stored response tagged with one of tags (in the tag
// header, see WithTagHeader) a miss on every node. It bumps each tag's
// generation: nothing is scanned, so it costs the same however many
// responses carry the tag.
func (m *Middleware) PurgeTag(ctx context.Context, tags ...string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	for _, t := range tags {
		if !validTag(t) {
			return fmt.Errorf("middleware: invalid tag %q", t)
		}
	}
	if len(tags) == 0 {
		return nil
	}
	// The epoch first: a load that reads a tag's new generation must also
	// see the new epoch, which makes it not store what it loaded (it may
	// predate the purge).
	var errs []error
	if err := m.cache.Set(ctx, epochKey, &Response{kind: kindGen, id: newID()}); err != nil {
		errs = append(errs, err)
	}
	for _, t := range tags {
		if err := m.cache.Set(ctx, tagKey(t), &Response{kind: kindGen, id: newID()}); err != nil {
			errs = append(errs, fmt.Errorf("purging tag %q: %w", t, err))
			continue
		}
		m.met.invalidated(reasonPurgeTag, 1)
	}
	return errors.Join(errs...)
}

// generation returns the current generation under key (a tag or the epoch),
// creating one if there is none. ok is false when it cannot be read.
func (m *Middleware) generation(ctx context.Context, key string) (gen uint64, ok bool) {
	v, err := m.cache.GetOrLoad(ctx, key, m.newGen)
	if err != nil || v == nil || v.kind != kindGen {
		return 0, false
	}
	return v.id, true
}

// newID returns a random non-zero id.
func newID() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// tagsCurrent reports whether every tag of rec still has the generation it
// had when rec was stored (no PurgeTag since).
func (m *Middleware) tagsCurrent(ctx context.Context, rec *Response) bool {
	for i := range rec.tags {
		g, ok := m.generation(ctx, rec.tags[i].key)
		if !ok || g != rec.tags[i].gen {
			return false
		}
	}
	return true
}
