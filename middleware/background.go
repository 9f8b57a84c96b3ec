package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tiercache/tiercache/tiered"
)

// refreshInBackground replaces a stale response served under
// stale-while-revalidate: at most one refresh per response per node (and,
// through the successor key's lease, per cluster), on a goroutine Close
// stops and waits for.
func (h *handler) refreshInBackground(rq *request, e entry) {
	m, key, rec := h.m, e.key, e.rec
	sk := successorKey(key, rec.id)
	if _, busy := m.refreshing.LoadOrStore(sk, struct{}{}); busy {
		return
	}
	release := func() { m.refreshing.Delete(sk) }
	select {
	case m.slots <- struct{}{}:
	default:
		release()
		return
	}
	if !m.track() {
		<-m.slots
		release()
		return
	}
	// A detached copy of the request: the client's may be gone by the time
	// the origin runs.
	br := rq.r.Clone(context.Background())
	br.Body, br.ContentLength = http.NoBody, 0
	brq := *rq
	p := plan{kind: planSuccessor, u: rq.u, spec: e.spec, key: key, stale: rec, validate: true}
	go func() {
		defer m.wg.Done()
		defer func() { <-m.slots; release() }()
		_, err := m.cache.GetOrLoad(m.closing, sk, func(ctx context.Context, _ string) (*Response, error) {
			if !m.track() {
				return nil, ErrClosed
			}
			defer m.wg.Done()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(m.closing, cancel)
			defer stop()
			lrq := brq
			lrq.r = br.WithContext(ctx)
			_, _, v, err := h.load(ctx, nil, &lrq, p, fwdStale)
			return v, err
		})
		var pe *passError
		if err != nil && !errors.As(err, &pe) && !errors.Is(err, ErrClosed) && !errors.Is(err, tiered.ErrClosed) && m.closing.Err() == nil {
			m.cfg.onError(m.closing, fmt.Errorf("middleware: refreshing %s in the background: %w", br.URL, err))
		}
	}()
}
