package remote

// ForceAcquireScript makes Acquire use the Lua fallback meant for servers
// older than Redis 7.0.
func ForceAcquireScript(s *Store) { s.acquireByScript.Store(true) }
