package tiered

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Rate of the default error handler's log lines (WithLogger, and the default
// logging on slog.Default()): a burst of 10 lines, then one line per
// second. Lines over the rate are dropped and counted; the next line
// logged carries the count as "suppressed". A handler set with
// WithErrorHandler sees every error.
const (
	logBurst    = 10
	logInterval = time.Second
)

// logLimiter is a token bucket: burst tokens, one more every interval.
type logLimiter struct {
	burst    float64
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed uint64
}

func newLogLimiter(burst int, interval time.Duration, now func() time.Time) *logLimiter {
	return &logLimiter{burst: float64(burst), interval: interval, now: now, tokens: float64(burst)}
}

// take reports whether a line may be logged now and, if so, how many lines
// were suppressed since the last one logged.
func (l *logLimiter) take() (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+float64(now.Sub(l.last))/float64(l.interval))
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// logTo returns a handler logging on l (slog.Default() at the time of each
// call when l is nil) at warning level, at most at the logBurst/logInterval
// rate.
func logTo(l *slog.Logger, now func() time.Time) func(context.Context, error) {
	lim := newLogLimiter(logBurst, logInterval, now)
	return func(ctx context.Context, err error) {
		ok, suppressed := lim.take()
		if !ok {
			return
		}
		logger := l
		if logger == nil {
			logger = slog.Default()
		}
		if suppressed > 0 {
			logger.WarnContext(ctx, "tiercache: handled error", "error", err, "suppressed", suppressed)
			return
		}
		logger.WarnContext(ctx, "tiercache: handled error", "error", err)
	}
}
