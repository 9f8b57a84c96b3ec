package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// hookedRemote runs a hook before the first write (Set or CompareAndSwap)
// of a key whose name contains match, once armed: it puts a purge exactly
// between a refresh's read of the stale entry and its write.
type hookedRemote struct {
	driver.Remote
	mu    sync.Mutex
	match string
	hook  func()
}

func (h *hookedRemote) arm(match string, hook func()) {
	h.mu.Lock()
	h.match, h.hook = match, hook
	h.mu.Unlock()
}

func (h *hookedRemote) before(key string) {
	h.mu.Lock()
	hook := h.hook
	if hook == nil || !strings.HasSuffix(key, h.match) {
		h.mu.Unlock()
		return
	}
	h.hook = nil
	h.mu.Unlock()
	hook()
}

func (h *hookedRemote) Set(ctx context.Context, key string, e driver.Entry) error {
	h.before(key)
	return h.Remote.Set(ctx, key, e)
}

func (h *hookedRemote) CompareAndSwap(ctx context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	h.before(key)
	return h.Remote.CompareAndSwap(ctx, key, version, e)
}

// A purge that lands while a refresh of the same URL is storing its result
// wins: the next request goes to the origin, it does not get the response
// the origin produced before the purge.
func TestRefreshDoesNotUndoPurge(t *testing.T) {
	for _, background := range []bool{false, true} {
		t.Run(fmt.Sprintf("background=%v", background), func(t *testing.T) {
			rdb := redistest.Standalone(t)
			st, err := remote.New(rdb, remote.WithCodec(middleware.Codec{}))
			if err != nil {
				t.Fatal(err)
			}
			hr := &hookedRemote{Remote: st}
			l1, err := local.New[*middleware.Response]()
			if err != nil {
				t.Fatal(err)
			}
			cache, err := tiered.New[*middleware.Response](redistest.Name(t), l1, hr, tiered.WithRemoteTimeout(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cache.Close() })
			var version atomic.Int64
			cc := "max-age=10"
			if background {
				cc += ", stale-while-revalidate=60"
			}
			f := newFixtureOn(t, cache, newClock(), func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", cc)
				fmt.Fprintf(w, "v%d", version.Add(1))
			})
			const url = "http://example.com/pr"
			f.do("GET", url) // v1 stored
			f.clock.Advance(11 * time.Second)
			purged := make(chan struct{})
			hr.arm("example.com/pr", func() {
				if err := f.mw.Purge(ctx, url); err != nil {
					t.Error(err)
				}
				close(purged)
			})
			w := f.do("GET", url) // refresh: origin writes v2, the purge lands before the write
			if background {
				if got := body(w); got != "v1" {
					t.Fatalf("stale body %q, want v1", got)
				}
			} else if got := body(w); got != "v2" {
				t.Fatalf("refreshed body %q, want v2", got)
			}
			select {
			case <-purged:
			case <-time.After(10 * time.Second):
				t.Fatal("the refresh never wrote the URL key")
			}
			waitFor(t, "the refresh to finish", func() bool { return f.mw.Stats().Stored == 2 })
			w = f.do("GET", url)
			if got, want := cacheStatus(w), "tiercache; fwd=uri-miss; stored"; got != want {
				t.Errorf("after the purge Cache-Status %q, want %q", got, want)
			}
			if got := body(w); got != "v3" {
				t.Errorf("after the purge body %q, want v3 (a new origin response)", got)
			}
		})
	}
}
