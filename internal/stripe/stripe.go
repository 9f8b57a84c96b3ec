// Package stripe holds Counter, a counter that many goroutines can increment
// at once without fighting over one cache line. tiered and middleware use it
// on their hit paths.
package stripe

import (
	"sync/atomic"
	"unsafe"
)

// stripes spreads a hot counter over cache lines so parallel increments on
// different cores do not fight over one.
const stripes = 16

// padded is a counter alone on its cache line. Go aligns it to 8 bytes
// only, so the padding is a full 128-byte stride: two counters are never on
// one 64-byte line, wherever the array starts.
type padded struct {
	atomic.Uint64
	_ [120]byte
}

// Counter is a counter cheap to increment from many goroutines at once:
// reads sum the stripes, and each goroutine increments the stripe its stack
// address hashes to. Goroutine stacks are distinct, so concurrent goroutines
// mostly keep to different cache lines, and one goroutine keeps to one (a
// random stripe per increment would bounce every line between cores). No
// allocation, no lock. The zero value is ready to use.
type Counter struct {
	_       [64]byte // keeps the first stripe off the line of the field before
	stripes [stripes]padded
}

// Add adds n.
func (c *Counter) Add(n uint64) {
	var onStack byte
	// Stacks are at least 8 KiB apart; mix the bits above that.
	h := uint64(uintptr(unsafe.Pointer(&onStack))>>13) * 0x9E3779B97F4A7C15
	c.stripes[h>>60%stripes].Add(n)
}

// Load returns the sum of every Add so far.
func (c *Counter) Load() uint64 {
	var sum uint64
	for i := range c.stripes {
		sum += c.stripes[i].Load()
	}
	return sum
}
