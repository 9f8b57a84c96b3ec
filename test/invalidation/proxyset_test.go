package invalidation_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/tcpproxy"
)

// proxySet puts one tcpproxy in front of every Redis address a client
// dials (a Cluster client dials every node), so that one switch partitions
// or delays all of a node's connections, old and new.
type proxySet struct {
	t       testing.TB
	mu      sync.Mutex
	proxies map[string]*tcpproxy.Proxy // by target address
	mode    tcpproxy.Mode
	delay   time.Duration
	stop    chan struct{} // closed to end a ramp
	wg      sync.WaitGroup
}

func newProxySet(t testing.TB) *proxySet {
	s := &proxySet{t: t, proxies: make(map[string]*tcpproxy.Proxy)}
	t.Cleanup(s.close)
	return s
}

// dial is a go-redis Dialer going through the proxy of addr.
func (s *proxySet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s.mu.Lock()
	p := s.proxies[addr]
	if p == nil {
		var err error
		if p, err = tcpproxy.New(addr); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		p.SetMode(s.mode)
		p.SetDelay(s.delay)
		s.proxies[addr] = p
	}
	s.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, p.Addr())
}

func (s *proxySet) setMode(m tcpproxy.Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
	for _, p := range s.proxies {
		p.SetMode(m)
	}
}

// setDelay sets the delay of every proxy, and ends a ramp.
func (s *proxySet) setDelay(d time.Duration) {
	s.endRamp()
	s.applyDelay(d)
}

func (s *proxySet) applyDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
	for _, p := range s.proxies {
		p.SetDelay(d)
	}
}

// ramp raises the delay in steps of 100 ms from 100 ms to top over length,
// on its own goroutine, until setDelay or close.
func (s *proxySet) ramp(top, length time.Duration) {
	s.endRamp()
	stop := make(chan struct{})
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	const step = 100 * time.Millisecond
	steps := int(top / step)
	s.wg.Go(func() {
		t := time.NewTicker(length / time.Duration(steps))
		defer t.Stop()
		for i := 1; i <= steps; i++ {
			s.applyDelay(time.Duration(i) * step)
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
	})
}

func (s *proxySet) endRamp() {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	s.wg.Wait()
}

func (s *proxySet) close() {
	s.endRamp()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.proxies {
		_ = p.Close()
	}
	s.proxies = nil
}
