package tiered_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// aheadClock is the system clock moved forward by a fixed offset; its
// timers run on the system clock.
type aheadClock struct{ by time.Duration }

func (c aheadClock) Now() time.Time                         { return time.Now().Add(c.by) }
func (c aheadClock) NewTimer(d time.Duration) driver.Timer  { return driver.SystemClock.NewTimer(d) }
func (c aheadClock) NewTicker(d time.Duration) driver.Timer { return driver.SystemClock.NewTicker(d) }

// TestClockDrivesLeaseExpiry: WithClock is the clock the lease protocol
// reads. Node A holds a live lease of a minute; node B, whose clock is two
// minutes ahead, sees it as expired and takes it over at once instead of
// waiting. On the system clock B waits (TestLeaseHolderClosedMidLoad).
func TestClockDrivesLeaseExpiry(t *testing.T) {
	eachDeploymentD(t, func(t *testing.T, d testRedis) {
		name := redistest.Name(t)
		a := newNode[user](t, name, d.client(t), tiered.WithLeaseTTL(time.Minute))
		b := newNode[user](t, name, d.client(t), tiered.WithLeaseTTL(time.Minute), tiered.WithClock(aheadClock{2 * time.Minute}))
		started, release := make(chan struct{}), make(chan struct{})
		aDone := make(chan error, 1)
		go func() {
			_, err := a.GetOrLoad(context.Background(), "k", func(ctx context.Context, key string) (user, error) {
				close(started)
				<-release
				return user{ID: "from-a"}, nil
			})
			aDone <- err
		}()
		<-started
		var bCalls atomic.Int64
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u, err := b.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (user, error) {
			bCalls.Add(1)
			return user{ID: "from-b"}, nil
		})
		close(release)
		if err != nil || u.ID != "from-b" {
			t.Fatalf("B: %+v, %v; want its own load", u, err)
		}
		if st := b.Stats(); bCalls.Load() != 1 || st.LeaseTakeovers != 1 || st.LeaseWaits != 0 {
			t.Fatalf("B loader calls %d, takeovers %d, waits %d; want 1, 1, 0", bCalls.Load(), st.LeaseTakeovers, st.LeaseWaits)
		}
		if err := <-aDone; err != nil {
			t.Fatalf("A: %v", err)
		}
		if st := a.Stats(); st.FillsRejected != 1 {
			t.Fatalf("A fills rejected = %d, want 1 (its lease was taken over)", st.FillsRejected)
		}
	})
}

func TestWithClockRejectsNil(t *testing.T) {
	_, err := tiered.New[user]("c", nil, nil, tiered.WithClock(nil))
	if !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("New with a nil clock: %v, want ErrInvalidOption", err)
	}
}
