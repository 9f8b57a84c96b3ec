package memremote_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
	"github.com/tiercache/tiercache/tiered/driver/memremote"
	"github.com/tiercache/tiercache/tiered/drivertest"
)

// fakeClock is a driver.Clock that moves only when told. The store reads
// only Now; the timers are the system's.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) NewTimer(d time.Duration) driver.Timer  { return driver.SystemClock.NewTimer(d) }
func (c *fakeClock) NewTicker(d time.Duration) driver.Timer { return driver.SystemClock.NewTicker(d) }

func TestContract(t *testing.T) {
	t.Run("fake clock", func(t *testing.T) {
		clock := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
		drivertest.RunRemote(t, drivertest.RemoteSuite{
			New: func(t *testing.T) driver.Remote {
				s, err := memremote.New(memremote.WithClock(clock), memremote.WithMaxPayloadBytes(1024))
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Clock:      clock,
			Advance:    clock.Advance,
			Unstorable: make([]byte, 1025),
		})
	})
	t.Run("system clock", func(t *testing.T) {
		s, err := memremote.New() // one store shared by every subtest
		if err != nil {
			t.Fatal(err)
		}
		drivertest.RunRemote(t, drivertest.RemoteSuite{
			New:        func(t *testing.T) driver.Remote { return s },
			Unstorable: make([]byte, memremote.DefaultMaxPayloadBytes+1),
		})
	})
}

func TestOptions(t *testing.T) {
	for name, o := range map[string]memremote.Option{
		"nil option":    nil,
		"nil clock":     memremote.WithClock(nil),
		"zero payload":  memremote.WithMaxPayloadBytes(0),
		"negative size": memremote.WithMaxPayloadBytes(-1),
	} {
		if _, err := memremote.New(o); !errors.Is(err, memremote.ErrInvalidOption) {
			t.Errorf("New(%s) = %v, want ErrInvalidOption", name, err)
		}
	}
}
