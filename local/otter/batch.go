package otter

import "time"

// FillMany stores n entries as n calls of Fill would (otter needs no wait to
// batch; the method exists so that both L1 stores offer it). at(i) returns
// entry i. It returns how many entries were stored.
func (s *Store[V]) FillMany(n int, at func(i int) (key string, value V, absent bool, ttl time.Duration, gen uint64)) (stored int) {
	for i := range n {
		if s.Fill(at(i)) {
			stored++
		}
	}
	return stored
}
