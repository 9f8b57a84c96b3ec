package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) bool
		wantErr bool
	}{
		{
			name: "defaults",
			check: func(c Config) bool {
				return c.Addr == ":8080" && c.QueryDelay == 20*time.Millisecond && c.Products == 500 &&
					c.StatsInterval == 10*time.Second && c.CacheName == "products" &&
					c.RedisAddr == "" && c.ClusterAddrs == nil &&
					!c.TraceStdout && !c.OTLPTraces && !c.GlobalTelemetry
			},
		},
		{
			name: "traces to stdout and OTLP",
			env:  map[string]string{"TRACE_STDOUT": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"},
			check: func(c Config) bool {
				return c.TraceStdout && c.OTLPTraces
			},
		},
		{
			name: "OTLP traces endpoint",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:4318/v1/traces"},
			check: func(c Config) bool {
				return !c.TraceStdout && c.OTLPTraces
			},
		},
		{
			name: "trace-stdout flag wins over the environment",
			args: []string{"-trace-stdout=false"},
			env:  map[string]string{"TRACE_STDOUT": "true"},
			check: func(c Config) bool {
				return !c.TraceStdout
			},
		},
		{
			name:  "trace-stdout flag",
			args:  []string{"-trace-stdout"},
			check: func(c Config) bool { return c.TraceStdout },
		},
		{name: "bad TRACE_STDOUT", env: map[string]string{"TRACE_STDOUT": "yes please"}, wantErr: true},
		{
			name: "environment",
			env: map[string]string{
				"ADDR": ":9090", "QUERY_DELAY": "5ms", "PRODUCTS": "10", "STATS_INTERVAL": "0",
				"TIERCACHE_REDIS_ADDR":    "127.0.0.1:7010",
				"TIERCACHE_CLUSTER_ADDRS": "127.0.0.1:7000, 127.0.0.1:7001,",
			},
			check: func(c Config) bool {
				return c.Addr == ":9090" && c.QueryDelay == 5*time.Millisecond && c.Products == 10 &&
					c.StatsInterval == 0 && c.RedisAddr == "127.0.0.1:7010" &&
					slices.Equal(c.ClusterAddrs, []string{"127.0.0.1:7000", "127.0.0.1:7001"})
			},
		},
		{
			name: "flags win over the environment",
			args: []string{"-addr", "127.0.0.1:0", "-query-delay", "0s", "-products", "3"},
			env:  map[string]string{"ADDR": ":9090", "QUERY_DELAY": "5ms"},
			check: func(c Config) bool {
				return c.Addr == "127.0.0.1:0" && c.QueryDelay == 0 && c.Products == 3
			},
		},
		{name: "bad duration", env: map[string]string{"QUERY_DELAY": "fast"}, wantErr: true},
		{name: "negative products", args: []string{"-products", "-1"}, wantErr: true},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: true},
		{name: "stray argument", args: []string{"serve"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr {
				if err == nil {
					t.Errorf("parseConfig = %+v, want an error", cfg)
				}
				return
			}
			if err != nil || !tt.check(cfg) {
				t.Errorf("parseConfig = %+v, %v", cfg, err)
			}
		})
	}
}
