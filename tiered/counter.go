package tiered

import (
	"math/rand/v2"
	"sync/atomic"
)

// counterStripes spreads a hot counter over cache lines so parallel L1 hits
// on different cores do not fight over one.
const counterStripes = 16

type paddedUint64 struct {
	atomic.Uint64
	_ [56]byte
}

// stripedCounter is a counter cheap to increment from many goroutines at
// once: each increment lands on a random stripe (runtime's per-thread
// generator: no allocation, no lock), reads sum the stripes.
type stripedCounter struct {
	stripes [counterStripes]paddedUint64
}

func (c *stripedCounter) Add(n uint64) {
	c.stripes[rand.Uint32()%counterStripes].Add(n)
}

func (c *stripedCounter) Load() uint64 {
	var sum uint64
	for i := range c.stripes {
		sum += c.stripes[i].Load()
	}
	return sum
}
