package drivertest

import (
	"testing"
	"time"
)

// patience bounds every wait of the suites for something that happens
// asynchronously (a bus delivery, an expiry on a real server's clock).
const patience = 10 * time.Second

// eventually polls cond until it holds, failing t after patience.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", patience, what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}
