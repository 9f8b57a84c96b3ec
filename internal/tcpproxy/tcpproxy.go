// Package tcpproxy is an in-process TCP proxy for fault tests: it forwards
// connections from a loopback port to a target and, on command, blackholes
// them (bytes are accepted and dropped, nothing answers: a partition or a
// frozen peer), delays them, or resets them. Tests point a client at
// [Proxy.Addr] instead of the server.
package tcpproxy

import (
	"net"
	"sync"
	"time"
)

// Mode is what the proxy does with the bytes of its connections.
type Mode int

const (
	// Forward passes bytes both ways (the default).
	Forward Mode = iota
	// Blackhole reads and drops bytes both ways: peers see an open
	// connection that never answers. New connections are accepted and
	// blackholed too.
	Blackhole
	// Hold reads bytes both ways and keeps them, in order, until the mode
	// changes: to Forward, they are delivered then (as TCP delivers what
	// it retransmits once a partition heals); to Blackhole, dropped.
	Hold
)

// Proxy forwards TCP connections to a target. Create it with New; Close it
// when done. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced by every SetMode
	delay   time.Duration
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// New listens on a free loopback port and forwards every connection to
// target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: make(map[net.Conn]struct{}), changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetMode switches every connection, open and future, to m.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
}

// SetDelay holds every chunk of bytes for d before passing it on (0: none).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Reset closes every open connection abruptly (RST); new ones are still
// accepted.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.SetMode(Blackhole) // held bytes are dropped
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) state() (Mode, time.Duration, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay, p.changed
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(in)
	}
}

func (p *Proxy) serve(in net.Conn) {
	defer p.wg.Done()
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = in.Close()
		return
	}
	p.track(in)
	p.track(out)
	defer func() {
		p.untrack(in)
		p.untrack(out)
	}()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(out, in) })
	wg.Go(func() { p.pipe(in, out) })
	wg.Wait()
}

// pipe copies from src to dst until either ends, honouring the mode and
// delay at every chunk.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			mode, delay, changed := p.state()
			for mode == Hold {
				<-changed
				mode, delay, changed = p.state()
			}
			if delay > 0 {
				time.Sleep(delay) // the injected latency itself
			}
			if mode == Forward {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil { // EOF or a closed connection: close both sides
			return
		}
	}
}
