package remote

// ForceAcquireScript makes Acquire use the Lua fallback meant for servers
// older than Redis 7.0.
func ForceAcquireScript(s *Store) { s.acquireByScript.Store(true) }

// ForceNativeCAS makes the store use SET IFEQ and DELEX as if the probe
// had found them (the harness' Redis 7.0 refuses them: tests use it to
// check what the native path sends).
func ForceNativeCAS(s *Store) { s.swap, s.release = bySetIfEq, byDelEx }
