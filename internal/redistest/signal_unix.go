//go:build unix

package redistest

import (
	"syscall"
	"testing"
)

// Pause freezes the server with SIGSTOP: connections stay open but nothing
// is answered, like a stalled host. Resume undoes it; Stop works on a paused
// server. Pausing a stopped server fails the test.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
}

// Resume continues a server paused with Pause (SIGCONT).
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatalf("redistest: %v to the server on %s, which is stopped", sig, s.addr())
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: %v to redis-server on %s: %v", sig, s.addr(), err)
	}
}
