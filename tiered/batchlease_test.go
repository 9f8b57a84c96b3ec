package tiered_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// countingRemote counts the per-key and the pipelined lease calls.
type countingRemote struct {
	*remote.Store
	acquire, cas, acquireMany, casMany atomic.Int64

	mu       sync.Mutex
	acquired map[string]int // per-key Acquire calls by key
}

func (r *countingRemote) Acquire(ctx context.Context, key string, token uint64, exp time.Time) (driver.Entry, bool, error) {
	r.acquire.Add(1)
	r.mu.Lock()
	if r.acquired == nil {
		r.acquired = map[string]int{}
	}
	r.acquired[key]++
	r.mu.Unlock()
	return r.Store.Acquire(ctx, key, token, exp)
}

func (r *countingRemote) CompareAndSwap(ctx context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	r.cas.Add(1)
	return r.Store.CompareAndSwap(ctx, key, version, e)
}

func (r *countingRemote) AcquireMany(ctx context.Context, keys []string, tokens []uint64, exp time.Time) ([]driver.Entry, []bool, []error) {
	r.acquireMany.Add(1)
	return r.Store.AcquireMany(ctx, keys, tokens, exp)
}

func (r *countingRemote) CompareAndSwapMany(ctx context.Context, keys []string, versions []uint64, es []driver.Entry) ([]bool, []error) {
	r.casMany.Add(1)
	return r.Store.CompareAndSwapMany(ctx, keys, versions, es)
}

// countingL1 counts single and batch fills.
type countingL1 struct {
	*local.Store[user]
	fills, batches atomic.Int64
}

func (l *countingL1) Fill(key string, v user, absent bool, ttl time.Duration, gen uint64) bool {
	l.fills.Add(1)
	return l.Store.Fill(key, v, absent, ttl, gen)
}

func (l *countingL1) FillMany(n int, at func(int) (string, user, bool, time.Duration, uint64)) int {
	l.batches.Add(1)
	return l.Store.FillMany(n, at)
}

func batchNode(t *testing.T, name string, rdb redis.UniversalClient) (*tiered.Cache[user], *countingL1, *countingRemote) {
	t.Helper()
	st, err := remote.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	s, err := local.New[user]()
	if err != nil {
		t.Fatal(err)
	}
	l1, l2 := &countingL1{Store: s}, &countingRemote{Store: st}
	c, err := tiered.New[user](name, l1, l2, tiered.WithRemoteTimeout(2*time.Second), tiered.WithNotFoundTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, l1, l2
}

// TestBatchLeasesPipelined: a batch of keys, some held by another node's
// lease, some already in L2, the rest empty. The leases of the empty keys
// are taken and filled with one pipelined call each (no per-key lease
// call), the loader gets exactly the keys won, the held keys come from
// their holder, and every result lands in L1 through one batch fill.
func TestBatchLeasesPipelined(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		c, l1, l2 := batchNode(t, name, rdb)
		other, _, _ := batchNode(t, name, rdb)
		var keys []string
		for i := range 30 {
			keys = append(keys, fmt.Sprint("k", i))
		}
		held, stored, empty := keys[:5], keys[5:10], keys[10:]
		for _, k := range stored {
			if err := other.Set(ctx, k, user{ID: k, Name: "stored"}); err != nil {
				t.Fatal(err)
			}
		}
		// Another node holds the leases of held: it fills them once our
		// loader has been called (so we must wait for them, not load them).
		st, _ := remote.New(rdb)
		const token = 424242
		for _, k := range held {
			if _, won, err := st.Acquire(ctx, name+":"+k, token, time.Now().Add(tiered.DefaultLeaseTTL)); err != nil || !won {
				t.Fatalf("planting the lease of %s: won %v, %v", k, won, err)
			}
		}
		loaded := make(chan []string, 1)
		var holder sync.WaitGroup
		var asked []string
		holder.Go(func() {
			asked = <-loaded
			for _, k := range held {
				b, _ := st.Marshal(user{ID: k, Name: "from the holder"})
				e := driver.Entry{Kind: driver.KindValue, Payload: b, ExpiresAt: time.Now().Add(time.Minute), Version: 7}
				if ok, err := st.CompareAndSwap(ctx, name+":"+k, token, e); err != nil || !ok {
					t.Errorf("the holder's fill of %s: %v, %v", k, ok, err)
				}
			}
		})
		got, err := c.GetOrLoadMany(ctx, keys, func(_ context.Context, ks []string) (map[string]user, error) {
			loaded <- slices.Clone(ks)
			out := map[string]user{}
			for _, k := range ks {
				if k != "k29" { // omitted: cached as not found
					out[k] = user{ID: k, Name: "loaded"}
				}
			}
			return out, nil
		})
		holder.Wait()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			u, ok := got[k]
			want := map[bool]string{true: "from the holder"}[slices.Contains(held, k)]
			switch {
			case slices.Contains(stored, k):
				want = "stored"
			case slices.Contains(empty, k):
				want = "loaded"
			}
			if k == "k29" {
				if ok {
					t.Errorf("k29 (omitted by the loader) = %+v, want absent", u)
				}
				continue
			}
			if !ok || u.Name != want {
				t.Errorf("%s = %+v, %v; want Name %q", k, u, ok, want)
			}
		}
		slices.Sort(asked)
		wantAsked := slices.Clone(empty)
		slices.Sort(wantAsked)
		if !slices.Equal(asked, wantAsked) {
			t.Errorf("loader asked for %v, want exactly the empty keys %v", asked, wantAsked)
		}
		// Per-key read-or-lease calls are the waits on the held keys only.
		l2.mu.Lock()
		for k, n := range l2.acquired {
			if !slices.Contains(held, strings.TrimPrefix(k, name+":")) {
				t.Errorf("%d per-key lease calls on %s, want 0 (all pipelined)", n, k)
			}
		}
		l2.mu.Unlock()
		if l2.acquireMany.Load() == 0 || l2.casMany.Load() == 0 {
			t.Errorf("pipelined calls: AcquireMany %d, CompareAndSwapMany %d; want both used", l2.acquireMany.Load(), l2.casMany.Load())
		}
		if n := l2.cas.Load(); n != 0 {
			t.Errorf("%d per-key fills, want 0", n)
		}
		if l1.batches.Load() == 0 {
			t.Error("no batch L1 fill")
		}
		// Everything is in L2 and in L1 now.
		for _, k := range empty {
			e, err := st.Get(ctx, name+":"+k)
			wantKind := driver.KindValue
			if k == "k29" {
				wantKind = driver.KindNotFound
			}
			if err != nil || e.Kind != wantKind {
				t.Errorf("L2 %s = kind %d, %v; want %d", k, e.Kind, err, wantKind)
			}
		}
		for _, k := range keys {
			if _, _, ok := l1.Store.Get(k); !ok {
				t.Errorf("%s is not in L1 after the batch", k)
			}
		}
	})
}

// TestBatchFillAfterDeleteIsDropped: a Delete of one key while the batch
// loader runs kills that key's lease: the callers get what was loaded, but
// neither tier keeps it; the other keys are stored.
func TestBatchFillAfterDeleteIsDropped(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		name := redistest.Name(t)
		c, l1, _ := batchNode(t, name, rdb)
		other, _, _ := batchNode(t, name, rdb)
		inLoader, release := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		var got map[string]user
		var err error
		wg.Go(func() {
			got, err = c.GetOrLoadMany(ctx, []string{"x", "y", "z"}, func(_ context.Context, ks []string) (map[string]user, error) {
				close(inLoader)
				<-release
				out := map[string]user{}
				for _, k := range ks {
					out[k] = user{ID: k, Name: "old"}
				}
				return out, nil
			})
		})
		<-inLoader
		if err := other.Delete(ctx, "y"); err != nil {
			t.Fatal(err)
		}
		close(release)
		wg.Wait()
		if err != nil || len(got) != 3 || got["y"].Name != "old" {
			t.Fatalf("GetOrLoadMany = %v, %v; want the three loaded values", got, err)
		}
		st, _ := remote.New(rdb)
		for _, k := range []string{"x", "y", "z"} {
			e, err := st.Get(ctx, name+":"+k)
			if err != nil {
				t.Fatal(err)
			}
			_, _, inL1 := l1.Store.Get(k)
			if k == "y" {
				if e.Kind != driver.KindNone || inL1 {
					t.Errorf("y was deleted during the load but L2 holds kind %d, L1 %v", e.Kind, inL1)
				}
				continue
			}
			if e.Kind != driver.KindValue || !inL1 {
				t.Errorf("%s: L2 kind %d, in L1 %v; want stored in both", k, e.Kind, inL1)
			}
		}
		if n := c.Stats().FillsRejected; n != 1 {
			t.Errorf("FillsRejected = %d, want 1", n)
		}
	})
}
