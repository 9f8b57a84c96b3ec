package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// parallel calls f from GOMAXPROCS goroutines for about d and returns the
// wall time per call (as testing.B.RunParallel reports it).
func parallel(d time.Duration, f func()) float64 {
	procs := runtime.GOMAXPROCS(0)
	var stop atomic.Bool
	var total atomic.Int64
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for range procs {
		wg.Go(func() {
			<-ready
			n := int64(0)
			for !stop.Load() {
				for range 256 {
					f()
				}
				n += 256
			}
			total.Add(n)
		})
	}
	t0 := time.Now()
	close(ready)
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(total.Load())
}

// sequential calls f n times and returns the mean time per call in
// nanoseconds.
func sequential(n int, f func(i int)) float64 {
	t0 := time.Now()
	for i := range n {
		f(i)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

// candidate is one contender of a scenario: run returns its value for one
// block.
type candidate struct {
	name string
	run  func() (float64, error)
}

// interleave runs every candidate once per round, rotating the order from
// round to round, and records the values in r.
func interleave(r *row, rounds int, cands []candidate) error {
	for _, c := range cands { // fix the row's order
		if _, ok := r.vals[c.name]; !ok {
			r.cands = append(r.cands, c.name)
			r.vals[c.name] = nil
		}
	}
	for round := range rounds {
		for i := range cands {
			c := cands[(i+round)%len(cands)]
			v, err := c.run()
			if err != nil {
				return err
			}
			r.vals[c.name] = append(r.vals[c.name], v)
		}
	}
	return nil
}
