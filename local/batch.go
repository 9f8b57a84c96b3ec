package local

import "time"

// FillMany stores n entries as n calls of Fill would, but waits for
// ristretto once for all of them instead of once per entry. at(i) returns
// entry i; it is called twice per entry (before storing, and to check the
// generation again after ristretto applied the batch) and must return the
// same entry both times. It returns how many entries were stored.
func (s *Store[V]) FillMany(n int, at func(i int) (key string, value V, absent bool, ttl time.Duration, gen uint64)) (stored int) {
	if s == nil || n <= 0 || !s.guard.Lock() {
		return 0
	}
	defer s.guard.Unlock()
	set := false
	for i := range n {
		key, value, absent, ttl, gen := at(i)
		epoch := s.guard.Epoch() // before the check, as in Guard.Fill
		if ttl <= 0 || s.guard.Generation(key) != gen {
			continue
		}
		if s.set(key, value, absent, ttl, epoch) {
			set = true
		}
	}
	if !set {
		return 0
	}
	s.cache.Wait()
	// As in Fill: an Invalidate that ran after the first check changed the
	// generation before deleting; remove what we stored for such keys.
	for i := range n {
		key, _, _, ttl, gen := at(i)
		if ttl <= 0 {
			continue
		}
		if s.guard.Generation(key) != gen {
			s.cache.Del(key)
			continue
		}
		if _, ok := s.cache.Get(key); ok {
			stored++
		}
	}
	return stored
}
