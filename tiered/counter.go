package tiered

import (
	"sync/atomic"
	"unsafe"
)

// counterStripes spreads a hot counter over cache lines so parallel L1 hits
// on different cores do not fight over one.
const counterStripes = 16

type paddedUint64 struct {
	atomic.Uint64
	_ [56]byte
}

// stripedCounter is a counter cheap to increment from many goroutines at
// once: reads sum the stripes, and each goroutine increments the stripe its
// stack address hashes to. Goroutine stacks are distinct, so concurrent
// goroutines mostly keep to different cache lines, and one goroutine keeps to
// one (a random stripe per increment would bounce every line between
// cores). No allocation, no lock.
type stripedCounter struct {
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
