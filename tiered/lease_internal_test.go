package tiered

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// memStore is an in-memory Remote whose entries expire at their ExpiresAt,
// on the (possibly synctest) clock.
type memStore struct {
	mu sync.Mutex
	m  map[string]driver.Entry
}

func newMemStore() *memStore { return &memStore{m: make(map[string]driver.Entry)} }

func (s *memStore) get(key string) driver.Entry {
	e, ok := s.m[key]
	if !ok || !e.ExpiresAt.After(time.Now()) {
		delete(s.m, key)
		return driver.Entry{}
	}
	return e
}

func (s *memStore) Get(_ context.Context, key string) (driver.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(key), nil
}

func (s *memStore) GetMany(ctx context.Context, keys []string) ([]driver.Entry, error) {
	out := make([]driver.Entry, len(keys))
	for i, k := range keys {
		out[i], _ = s.Get(ctx, k)
	}
	return out, nil
}

func (s *memStore) Set(_ context.Context, key string, e driver.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = e
	return nil
}

func (s *memStore) Delete(_ context.Context, keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

func (s *memStore) Acquire(_ context.Context, key string, token uint64, expiresAt time.Time) (driver.Entry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.get(key); cur.Kind != driver.KindNone {
		return cur, false, nil
	}
	s.m[key] = driver.Entry{Kind: driver.KindLease, Version: token, ExpiresAt: expiresAt}
	return driver.Entry{}, true, nil
}

func (s *memStore) CompareAndSwap(_ context.Context, key string, version uint64, e driver.Entry) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.get(key); cur.Kind == driver.KindNone || cur.Version != version {
		return false, nil
	}
	s.m[key] = e
	return true, nil
}

func (s *memStore) CompareAndDelete(_ context.Context, key string, version uint64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.get(key); cur.Kind == driver.KindNone || cur.Version != version {
		return false, nil
	}
	delete(s.m, key)
	return true, nil
}

func (s *memStore) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (s *memStore) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func (s *memStore) entry(key string) (e driver.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(key)
}

// The holder renews its lease every LeaseTTL/3 while its loader runs, for
// as long as it runs, and stops when the load ends.
func TestLeaseRenewalTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		c, err := New[string]("renew", nil, store, WithLeaseTTL(3*time.Second), WithLoadTimeout(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const loadTime = 10*time.Second + 500*time.Millisecond
		done := make(chan error)
		go func() {
			_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (string, error) {
				time.Sleep(loadTime) // the load's duration, on the fake clock
				return "v", nil
			})
			done <- err
		}()
		// Throughout the load the lease is held and never closer than
		// 2/3 LeaseTTL to its end.
		for range 20 {
			time.Sleep(500 * time.Millisecond)
			synctest.Wait()
			e := store.entry("renew:k")
			if e.Kind == driver.KindValue {
				break
			}
			if e.Kind != driver.KindLease || time.Until(e.ExpiresAt) < 2*time.Second-time.Millisecond {
				t.Fatalf("lease %+v at %v: want held with >= 2s left", e, time.Now())
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Ticks at 1 s, 2 s, ... 10 s within the 10.5 s load.
		if n := c.Stats().LeaseRenewals; n != 10 {
			t.Fatalf("renewals = %d, want 10 (every LeaseTTL/3 during a %v load)", n, loadTime)
		}
		if e := store.entry("renew:k"); e.Kind != driver.KindValue {
			t.Fatalf("after the load L2 holds %+v, want the value", e)
		}
		// The renewing goroutine has ended: nothing renews any more.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := c.Stats().LeaseRenewals; n != 10 {
			t.Fatalf("renewals after the load = %d, want still 10", n)
		}
	})
}

// A holder that dies (its loader never returns and it stops renewing) loses
// the lease within LeaseTTL: a waiter takes it over.
func TestLeaseTakeoverTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		// A dead holder's lease: written once, never renewed.
		store.Set(context.Background(), "dead:k", driver.Entry{Kind: driver.KindLease, Version: 7, ExpiresAt: time.Now().Add(3 * time.Second)})
		c, err := New[string]("dead", nil, store)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		v, err := c.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) { return "v", nil })
		if err != nil || v != "v" {
			t.Fatalf("GetOrLoad = %q, %v", v, err)
		}
		if took := time.Since(start); took < 3*time.Second || took > 3*time.Second+DefaultLeasePollMax {
			t.Fatalf("took over after %v, want within LeaseTTL (3s) plus one poll", took)
		}
	})
}
