package tiered

// Test-only exports: the default error log's rate.
const (
	LogBurst    = logBurst
	LogInterval = logInterval
)
