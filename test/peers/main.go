// Command peers measures tiercache side by side with other Go caches on real
// Redis servers (go-redis/cache v9, sturdyc, rueidis client-side caching, raw
// ristretto v2 and raw otter v2), interleaving the candidates of each
// scenario block by block and repeating the whole for several rounds. It
// prints a Markdown table (medians, and medians and ranges of the per-round
// ratios to each scenario's baseline) and writes an SVG chart.
//
// It lives in its own module so that the peers never enter tiercache's
// go.mod. Run it with the harness up (make bench-peers does all of it):
//
//	test/redis.sh start && eval "$(test/redis.sh env)"
//	cd test/peers && GOWORK=off go run . -md ../../docs/peers.md -svg ../../docs/peers.svg
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"
)

type config struct {
	rounds  int
	l1Block time.Duration // one candidate's block of parallel L1 hits
	l2Ops   int           // sequential L2 calls per block
	batches int           // batches per block
	keys    int           // keys of the hit-ratio key space
	hitReqs int           // measured requests of the hit-ratio test
	writes  int           // writes per block of the visibility test
	only    string        // run only the scenarios whose group contains this
}

func main() {
	var cfg config
	mdPath := flag.String("md", "", "write the Markdown table to this file too")
	svgPath := flag.String("svg", "", "write the SVG chart to this file")
	flag.IntVar(&cfg.rounds, "rounds", 7, "rounds (every scenario's candidates are interleaved once per round)")
	flag.DurationVar(&cfg.l1Block, "l1-block", 200*time.Millisecond, "duration of one block of parallel L1 hits")
	flag.IntVar(&cfg.l2Ops, "l2-ops", 1000, "sequential L2 calls per block")
	flag.IntVar(&cfg.batches, "batches", 20, "batches of 100 keys per block")
	flag.IntVar(&cfg.keys, "keys", 1_000_000, "key space of the hit-ratio test")
	flag.IntVar(&cfg.hitReqs, "hit-requests", 1_000_000, "measured requests per candidate of the hit-ratio test (after as many warm-up requests / 5)")
	flag.IntVar(&cfg.writes, "writes", 200, "writes per block of the visibility test")
	flag.StringVar(&cfg.only, "only", "", "run only the scenario groups whose name contains this (case-insensitive)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	tracePath := flag.String("trace", "", "write an execution trace of the whole run to this file")
	flag.Parse()
	if cfg.rounds < 1 {
		log.Fatal("peers: -rounds must be at least 1")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *tracePath != "" {
		f, err := os.Create(*tracePath)
		if err != nil {
			log.Fatal(err)
		}
		if err := trace.Start(f); err != nil {
			log.Fatal(err)
		}
		defer trace.Stop()
	}
	env, err := loadEnv()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	var rows []*row
	run := func(group string, f func() ([]*row, error)) {
		if cfg.only != "" && !strings.Contains(strings.ToLower(group), strings.ToLower(cfg.only)) {
			return
		}
		log.Printf("peers: %s ...", group)
		t0 := time.Now()
		rs, err := f()
		if err != nil {
			log.Fatalf("peers: %s: %v", group, err)
		}
		log.Printf("peers: %s done in %v", group, time.Since(t0).Round(time.Millisecond))
		rows = append(rows, rs...)
	}
	run("L1 hit", func() ([]*row, error) { return l1Hit(ctx, env, cfg) })
	run("L2 hit", func() ([]*row, error) { return l2Hit(ctx, env, cfg) })
	run("GetOrLoadMany", func() ([]*row, error) { return batches(ctx, env, cfg) })
	run("Stampede", func() ([]*row, error) { return stampede(ctx, env, cfg) })
	run("Writes", func() ([]*row, error) { return writes(ctx, env, cfg) })
	run("Hit ratio", func() ([]*row, error) { return hitRatio(cfg) })
	run("Heap", func() ([]*row, error) { return heap() })

	header := fmt.Sprintf("Measured by `make bench-peers` (test/peers, %d rounds) on %s/%s, %d CPUs, %s, Redis %s; took %v.\n",
		cfg.rounds, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), env.version, time.Since(start).Round(time.Second))
	md := markdown(rows, cfg.rounds, header)
	fmt.Print(md)
	if *mdPath != "" {
		if err := os.WriteFile(*mdPath, []byte(md), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if *svgPath != "" {
		svg := chart(rows, fmt.Sprintf("tiercache and peers (make bench-peers, %d rounds, %d CPUs)", cfg.rounds, runtime.NumCPU()))
		if err := os.WriteFile(*svgPath, []byte(svg), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
