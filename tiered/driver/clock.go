package driver

import "time"

// Clock is the time source of everything in tiercache that waits or
// measures time: a cache's leases, breakers, refreshes and log limits, a
// bus's heartbeats and watchdog, the HTTP middleware's freshness, the
// status page's sampling. SystemClock is the default everywhere; tests
// pass a fake one (or run under testing/synctest with the system clock).
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker firing every d, first at now+d. Like
	// time.Ticker it drops ticks nobody received. d must be positive.
	NewTicker(d time.Duration) Timer
}

// Timer is a timer or ticker of a Clock.
type Timer interface {
	// C is the channel the ticks are sent on.
	C() <-chan time.Time
	// Reset stops the timer and starts it again for d. As with
	// time.Timer since Go 1.23, Reset discards a pending tick.
	Reset(d time.Duration)
	// Stop stops the timer; no tick is sent after it returns.
	Stop()
}

// SystemClock is the wall clock (package time).
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time                  { return time.Now() }
func (systemClock) NewTimer(d time.Duration) Timer  { return timeTimer{time.NewTimer(d)} }
func (systemClock) NewTicker(d time.Duration) Timer { return timeTicker{time.NewTicker(d)} }

type timeTimer struct{ t *time.Timer }

func (t timeTimer) C() <-chan time.Time   { return t.t.C }
func (t timeTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t timeTimer) Stop()                 { t.t.Stop() }

type timeTicker struct{ t *time.Ticker }

func (t timeTicker) C() <-chan time.Time   { return t.t.C }
func (t timeTicker) Reset(d time.Duration) { t.t.Reset(d) }
func (t timeTicker) Stop()                 { t.t.Stop() }
