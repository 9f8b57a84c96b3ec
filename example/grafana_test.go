package main

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard JSON the test reads.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	// A metric in a PromQL selector: a name followed by its labels or a
	// range. Label names (tiercache_cache=...) are followed by neither.
	promMetric = regexp.MustCompile(`\b([a-z_:][a-z0-9_:]*)\s*[{\[]`)
	// A label matcher inside a selector's braces.
	promLabel = regexp.MustCompile(`([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)`)
	// A selector with its braces.
	promSelector = regexp.MustCompile(`\b([a-z_:][a-z0-9_:]*)\{([^}]*)\}`)
	// by (...) groupings.
	promBy = regexp.MustCompile(`by \(([^)]*)\)`)
)

// TestGrafanaDashboard checks example/grafana/tiercache.json against what
// the service really exports: it runs two nodes of the service on the
// Cluster, drives reads, HTTP hits and misses and a write on one node,
// waits until the other node's bus applied the write, scrapes that node's
// /metrics, and requires every metric the dashboard queries to be there,
// with every label the dashboard selects or groups by. A dashboard that
// queries a renamed metric shows empty panels and nothing else says so.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/tiercache.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana/tiercache.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("the dashboard has %d queries; the parser found too few", len(exprs))
	}

	addrs := realRedis(t, "TIERCACHE_CLUSTER_ADDRS")
	cfg := Config{ClusterAddrs: strings.Split(addrs, ","), CacheName: "grafana-" + rand.Text()[:10], Catalog: NewCatalog(100, 0)}
	a, c := startService(t, cfg), startService(t, cfg)
	for _, n := range []*testClient{a, c} {
		n.product("/products/7", http.StatusOK)
		n.product("/products/7", http.StatusOK)
		n.doWith(http.Header{"Cache-Control": {"no-cache"}}, http.MethodGet, "/products/7", "", http.StatusOK, nil)
		n.product("/products/8", http.StatusOK)
	}
	// The invalidation lag is measured on the node that receives.
	a.do(http.MethodPut, "/products/7", `{"name": "Changed", "price_cents": 1}`, http.StatusOK, nil)
	c.await(func(st Stats) bool { return st.Bus != nil && st.Bus.KeysInvalidated >= 1 })
	m := c.metrics()

	// labels of each exported family, over all its samples.
	labels := map[string][]string{}
	for name, fam := range m.fam {
		base := strings.TrimSuffix(name, "_bucket")
		for _, s := range fam.GetMetric() {
			for _, l := range s.GetLabel() {
				if !slices.Contains(labels[base], l.GetName()) {
					labels[base] = append(labels[base], l.GetName())
				}
			}
		}
	}
	exported := func(name string) bool {
		_, ok := m.fam[name]
		if !ok && strings.HasSuffix(name, "_bucket") {
			_, ok = m.fam[strings.TrimSuffix(name, "_bucket")]
		}
		return ok
	}
	// Fault-only counters (flushes, gaps, publish errors, breaker
	// rejections) are observed from the start, at zero: none may be absent.
	checked := 0
	for _, e := range exprs {
		e = strings.ReplaceAll(e, "$__rate_interval", "5m")
		for _, mm := range promMetric.FindAllStringSubmatch(e, -1) {
			name := mm[1]
			if !strings.HasPrefix(name, "tiercache_") {
				continue
			}
			checked++
			if !exported(name) {
				t.Errorf("the dashboard queries %s, which /metrics does not have (query: %s)", name, e)
			}
		}
		for _, sel := range promSelector.FindAllStringSubmatch(e, -1) {
			name := strings.TrimSuffix(sel[1], "_bucket")
			if !exported(sel[1]) {
				continue // reported above
			}
			for _, l := range promLabel.FindAllStringSubmatch(sel[2], -1) {
				if !slices.Contains(labels[name], l[1]) {
					t.Errorf("the dashboard selects %s by label %s, which it does not have (labels: %v)", name, l[1], labels[name])
				}
			}
		}
		if strings.Contains(e, "label_values(") {
			continue
		}
		// Every label a query groups by must be on at least one metric it
		// reads (le: the histogram buckets' own).
		var read []string
		for _, mm := range promMetric.FindAllStringSubmatch(e, -1) {
			read = append(read, strings.TrimSuffix(mm[1], "_bucket"))
		}
		for _, by := range promBy.FindAllStringSubmatch(e, -1) {
			for l := range strings.SplitSeq(by[1], ",") {
				l = strings.TrimSpace(l)
				if l == "le" {
					continue
				}
				if !slices.ContainsFunc(read, func(n string) bool { return slices.Contains(labels[n], l) }) {
					t.Errorf("the dashboard groups by %s, which none of %v has (query: %s)", l, read, e)
				}
			}
		}
	}
	if checked < 15 {
		t.Fatalf("checked %d metric references; the parser missed some", checked)
	}
}
