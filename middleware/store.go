package middleware

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tiercache/tiercache/tiered"
)

// Stage 5: store. freshness.go decides whether a response the origin wrote
// may be stored and for how long; this file decides where it goes: under
// the URL key, under a variant of the URL's vary spec, or in place of the
// stale response a refresh replaces.

// planKind says what a load is for, hence where its result is stored.
type planKind uint8

const (
	planURL       planKind = iota // nothing stored for the URL: store under the URL key
	planVariant                   // the URL's vary spec had no response for these values
	planSuccessor                 // a stale response is being replaced
	planDirect                    // a load that bypassed the lookup (request no-cache, key headers)
)

type plan struct {
	kind planKind
	u    requestURL
	spec *Response // the URL's vary spec, if any (planVariant, planSuccessor)
	key  string    // planSuccessor: the key of the stale response
	// planSuccessor: the stale response, and whether it may answer if the
	// origin fails (stale-if-error).
	stale      *Response
	staleOnErr bool
	// planSuccessor: ask the origin conditionally with the stale
	// response's validators (not for one purged by tag: a purge asks for
	// the full response).
	validate bool
}

// place decides what tiered stores under the loaded key for a storable
// response rec, writing what else the plan needs (the variant of a new vary
// spec, the replaced key of a successor).
func (h *handler) place(ctx context.Context, rq *request, p plan, rec *Response, vary []string) (*Response, error) {
	m, r := h.m, rq.r
	pass := &passError{status: rec.status}
	switch p.kind {
	case planURL:
		if len(vary) == 0 && !rq.has(rqKeyHeader) {
			return rec, nil
		}
		names := m.specNames(vary)
		spec := &Response{kind: kindVary, id: newID(), vary: names}
		if err := m.cache.Set(ctx, variantKey(p.u.key, spec, r.Header), rec); err != nil {
			m.cfg.onError(ctx, fmt.Errorf("middleware: storing a variant of %s: %w", r.URL, err))
			return nil, pass
		}
		return spec, nil
	case planVariant:
		if !slices.Equal(m.specNames(vary), p.spec.vary) {
			// The origin changed what it varies on: forget the spec, the
			// next request stores the new one.
			m.delete(ctx, p.u.key)
			return nil, pass
		}
		return rec, nil
	case planSuccessor:
		shapeOK := slices.Equal(m.specNames(vary), p.spec.varyOrNil())
		if p.spec == nil {
			shapeOK = len(vary) == 0 && !rq.has(rqKeyHeader)
		}
		if !shapeOK {
			m.delete(ctx, p.u.key)
			return nil, pass
		}
		if m.replace(ctx, p.key, p.stale.id, rec) {
			// The successor key only says where the response went, so
			// it is not stored twice; waiters read it from there.
			return &Response{kind: kindMoved, id: rec.id}, nil
		}
		return rec, nil
	case planDirect:
		if err := m.storeDirect(ctx, rq, rec, vary); err != nil {
			m.cfg.onError(ctx, fmt.Errorf("middleware: storing %s: %w", r.URL, err))
			return nil, pass
		}
		return rec, nil
	}
	return nil, pass
}

func (r *Response) varyOrNil() []string {
	if r == nil {
		return nil
	}
	return r.vary
}

// storeDirect stores rec for the URL outside a load of its key: under the
// URL's vary spec if it has the right one, else under the URL key (no Vary,
// no key headers), else under a new vary spec.
func (m *Middleware) storeDirect(ctx context.Context, rq *request, rec *Response, vary []string) error {
	r, u := rq.r, rq.u
	names := m.specNames(vary)
	cur, ok := m.get(ctx, u.key)
	switch {
	case ok && cur.kind == kindVary && slices.Equal(cur.vary, names):
		return m.cache.Set(ctx, variantKey(u.key, cur, r.Header), rec)
	case len(vary) == 0 && !rq.has(rqKeyHeader):
		return m.cache.Set(ctx, u.key, rec)
	}
	spec := &Response{kind: kindVary, id: newID(), vary: names}
	if err := m.cache.Set(ctx, variantKey(u.key, spec, r.Header), rec); err != nil {
		return err
	}
	return m.cache.Set(ctx, u.key, spec)
}

func (m *Middleware) delete(ctx context.Context, key string) {
	if err := m.cache.Delete(ctx, key); err != nil {
		m.cfg.onError(ctx, fmt.Errorf("middleware: deleting a stored response: %w", err))
	}
}

// replace writes rec under key in place of the stored response staleID
// with tiered's conditional write, and reports whether it did: a purge (or
// a newer response) that landed since the read wins, even one that lands
// between the read and the write.
func (m *Middleware) replace(ctx context.Context, key string, staleID uint64, rec *Response) bool {
	cur, version, ok, err := m.cache.GetVersioned(ctx, key)
	if err != nil || !ok || cur == nil || cur.id != staleID {
		return false
	}
	swapped, err := m.cache.CompareAndSet(ctx, key, version, rec)
	if err != nil && !errors.Is(err, tiered.ErrInvalidation) {
		m.cfg.onError(ctx, fmt.Errorf("middleware: storing a refreshed response: %w", err))
	}
	return swapped
}
