//go:build unix

package redistest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestServerPauseResume(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	// go-redis applies context deadlines to socket reads only when asked to.
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(ctxT(t)).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}

	s.Pause(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := c.Ping(ctx).Err()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PING while paused: err = %v, want context.DeadlineExceeded", err)
	}

	s.Resume(t)
	if err := c.Ping(ctxT(t)).Err(); err != nil {
		t.Errorf("PING after Resume: %v", err)
	}

	// Stop works on a paused server.
	s.Pause(t)
	s.Stop(t)
	s.Start(t)
	if err := c.Ping(ctxT(t)).Err(); err != nil {
		t.Errorf("PING after Pause, Stop, Start: %v", err)
	}
}
