package tcpproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo serves one line-echo server on loopback.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestProxyModes(t *testing.T) {
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("forward: %q, %v", got, err)
	}
	p.SetMode(Blackhole)
	if got, err := roundTrip(c, r, 200*time.Millisecond); err == nil {
		t.Fatalf("blackhole answered %q", got)
	}
	p.SetMode(Forward)
	p.Reset()
	if _, err := roundTrip(c, r, 5*time.Second); err == nil {
		t.Fatal("a reset connection still works")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	p.SetDelay(100 * time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(c2, bufio.NewReader(c2), 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("after reset: %q, %v", got, err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("a delayed round trip took %v, want >= 200ms (two delayed hops)", took)
	}
}
