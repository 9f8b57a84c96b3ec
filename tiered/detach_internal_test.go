package tiered

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tiercache/tiercache/local"
)

// TestWriteDetachesFlight: a GetOrLoad that begins after its node's own
// write of the key returned never joins a flight that began before the
// write (it would return the value the write replaced): every write and
// every invalidation detaches the key's flight. Checked for each write
// with an L1 + L2 cache whose first load is held mid-flight.
func TestWriteDetachesFlight(t *testing.T) {
	writes := map[string]func(ctx context.Context, c *Cache[string]) error{
		"Delete": func(ctx context.Context, c *Cache[string]) error { return c.Delete(ctx, "k") },
		"Set":    func(ctx context.Context, c *Cache[string]) error { return c.Set(ctx, "k", "new") },
		"SetMany": func(ctx context.Context, c *Cache[string]) error {
			return c.SetMany(ctx, map[string]string{"k": "new"})
		},
		// Another node's Delete: L2 first, then the bus.
		"bus key": func(ctx context.Context, c *Cache[string]) error {
			err := c.l2.Delete(ctx, c.prefix+"k")
			c.onInvalidate([]string{"k"})
			return err
		},
		"bus flush": func(ctx context.Context, c *Cache[string]) error {
			err := c.l2.Delete(ctx, c.prefix+"k")
			c.onFlush()
			return err
		},
	}
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			l1, err := local.New[string]()
			if err != nil {
				t.Fatal(err)
			}
			c, err := New[string]("detach", l1, newMemStore())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var version atomic.Value
			version.Store("old")
			started, gate := make(chan struct{}), make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(gate) }) }
			defer release() // before Close, which awaits the held flight
			var calls atomic.Int32
			load := func(context.Context, string) (string, error) {
				v := version.Load().(string) // read before the write
				if calls.Add(1) == 1 {
					close(started)
					<-gate
				}
				return v, nil
			}
			first := make(chan string, 1)
			go func() {
				v, err := c.GetOrLoad(ctx, "k", load)
				if err != nil {
					t.Error(err)
				}
				first <- v
			}()
			<-started
			version.Store("new")
			if err := write(ctx, c); err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			_, joinable := c.flights["k"]
			c.mu.Unlock()
			if joinable {
				t.Fatalf("after %s the flight that began before it can still be joined", name)
			}
			v, err := c.GetOrLoad(ctx, "k", load)
			release()
			if err != nil || v != "new" {
				t.Errorf("GetOrLoad after %s = %q, %v; want new", name, v, err)
			}
			if v := <-first; v != "old" {
				t.Errorf("the flight that began before %s = %q, want old (its caller was concurrent with the write)", name, v)
			}
		})
	}
}
