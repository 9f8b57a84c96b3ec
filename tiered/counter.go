package tiered

import (
	"sync/atomic"
	"unsafe"
)

// counterStripes spreads a hot counter over cache lines so parallel L1 hits
// on different cores do not fight over one.
const counterStripes = 16

// paddedUint64 is a counter alone on its cache line. Go aligns it to 8
// bytes only, so the padding is a full 128-byte stride: two counters are
// never on one 64-byte line, wherever the array starts.
type paddedUint64 struct {
	atomic.Uint64
	_ [120]byte
}

// stripedCounter is a counter cheap to increment from many goroutines at
// once: reads sum the stripes, and each goroutine increments the stripe its
// stack address hashes to. Goroutine stacks are distinct, so concurrent
// goroutines mostly keep to different cache lines, and one goroutine keeps to
// one (a random stripe per increment would bounce every line between
// cores). No allocation, no lock.
type stripedCounter struct {
	_       [64]byte // keeps the first stripe off the line of the field before
	stripes [counterStripes]paddedUint64
}

func (c *stripedCounter) Add(n uint64) {
	var onStack byte
	// Stacks are at least 8 KiB apart; mix the bits above that.
	h := uint64(uintptr(unsafe.Pointer(&onStack))>>13) * 0x9E3779B97F4A7C15
	c.stripes[h>>60%counterStripes].Add(n)
}

func (c *stripedCounter) Load() uint64 {
	var sum uint64
	for i := range c.stripes {
		sum += c.stripes[i].Load()
	}
	return sum
}
