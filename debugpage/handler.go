package debugpage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

// ServeHTTP answers GET and HEAD with the page: HTML for people, or JSON
// (the View type) with ?format=json. Other methods get 405. The response
// is never cached (Cache-Control: no-store).
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	v := p.view()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	var buf bytes.Buffer
	switch f := r.URL.Query().Get("format"); f {
	case "json":
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			http.Error(w, "debugpage: encoding JSON: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
	case "", "html":
		if err := pageTemplate.Execute(&buf, v); err != nil {
			http.Error(w, "debugpage: rendering: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// Self-contained: nothing may load from elsewhere.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	default:
		http.Error(w, fmt.Sprintf("debugpage: unknown format %q (want html or json)", f), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct": func(r *float64) string {
		if r == nil {
			return "–"
		}
		return fmt.Sprintf("%.1f %%", *r*100)
	},
	"secs": func(s float64) string {
		d := time.Duration(s * float64(time.Second))
		switch {
		case d == 0:
			return "0"
		case d < time.Millisecond:
			return d.Round(time.Microsecond).String()
		case d < time.Second:
			return d.Round(10 * time.Microsecond).String()
		}
		return d.Round(time.Millisecond).String()
	},
	"span":  func(s float64) string { return time.Duration(s * float64(time.Second)).Round(time.Second).String() },
	"clock": func(t time.Time) string { return t.Format("15:04:05") },
	"shard": func(s string) string {
		if s == "" {
			return "(all)"
		}
		return s
	},
	"ok": func(b bool) string {
		if b {
			return "ok"
		}
		return "bad"
	},
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>{{.Title}} status</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1d2330;background:#f7f8fa}
h1{font-size:1.5em;margin:0 0 .2em}
h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #d5d9e0;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.meta{color:#5b6475;margin-bottom:1em}
table{border-collapse:collapse;margin:.3em 0 .8em;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{padding:.3em .7em;border:1px solid #e1e4ea;text-align:right;white-space:nowrap}
th{background:#eef1f5;font-weight:600}
td.l,th.l{text-align:left}
.card{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:.6em 1em;margin:.8em 0}
.ok{color:#17803d;font-weight:600}
.bad,.open{color:#c0262d;font-weight:600}
.half-open{color:#b86e00;font-weight:600}
.closed{color:#17803d}
.none{color:#8a93a3}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
</style>
</head>
<body>
<h1>{{.Title}} status</h1>
<div class="meta">at {{clock .Time}} · hit ratios and counts over the last {{span .Window}} · refreshes every 5 s · <a href="?format=json">JSON</a></div>

<h2>Caches</h2>
{{if not .Caches}}<p class="none">No caches.</p>{{end}}
{{range .Caches}}
<div class="card">
<h3>{{.Name}}</h3>
<table>
<tr><th class="l">last {{span .Recent.Seconds}}</th><th>requests</th><th>hits</th><th>hit ratio</th></tr>
<tr><td class="l">L1 (ristretto)</td><td>{{.Recent.L1.Requests}}</td><td>{{.Recent.L1.Hits}}</td><td>{{pct .Recent.L1.Ratio}}</td></tr>
<tr><td class="l">L2 (Redis)</td><td>{{.Recent.L2.Requests}}</td><td>{{.Recent.L2.Hits}}</td><td>{{pct .Recent.L2.Ratio}}</td></tr>
</table>
<table>
<tr><th>loader calls</th><th>not found</th><th>load errors</th><th>L2 errors</th><th>lease waits</th><th>mean wait</th><th>loads in flight</th><th>keys in flight</th><th>refreshing</th></tr>
<tr><td>{{.Recent.Loads}}</td><td>{{.Recent.LoadNotFound}}</td><td>{{.Recent.LoadErrors}}</td><td>{{.Recent.L2Errors}}</td><td>{{.Recent.LeaseWaits}}</td><td>{{secs .Recent.LeaseWaitAvg}}</td><td>{{.LoadsInFlight}}</td><td>{{.Flights}}</td><td>{{.Refreshing}}</td></tr>
</table>
<table>
<tr><th class="l">L1</th><th>entries</th><th>cost</th><th>dropped sets</th><th>rejected sets</th></tr>
{{if .L1.Present}}{{if .L1.Sized}}<tr><td class="l">now</td><td>{{if .L1.EntriesKnown}}{{.L1.Entries}}{{else}}–{{end}}</td><td>{{.L1.Cost}}</td><td>{{.L1.Dropped}}</td><td>{{.L1.Rejected}}</td></tr>
{{else}}<tr><td class="l none" colspan="5">the store does not report its size</td></tr>{{end}}
{{else}}<tr><td class="l none" colspan="5">no L1 (L2 only)</td></tr>{{end}}
</table>
<table>
<tr><th class="l">breaker shard</th><th class="l">state</th><th>openings</th><th>rejected calls</th></tr>
{{range .Breakers}}<tr><td class="l"><code>{{shard .Shard}}</code></td><td class="l {{.State}}">{{.State}}</td><td>{{.Openings}}</td><td>{{.Rejected}}</td></tr>
{{else}}<tr><td class="l none" colspan="4">no breaker</td></tr>{{end}}
</table>
</div>
{{end}}

<h2>Invalidation buses</h2>
{{if not .Buses}}<p class="none">No buses.</p>{{end}}
{{range .Buses}}
<div class="card">
<h3>{{.Name}} <span class="{{ok .Healthy}}">{{if .Healthy}}healthy{{else}}unhealthy{{end}}</span></h3>
<div class="meta">{{if .Origin}}origin <code>{{.Origin}}</code> · {{if .Sharded}}sharded pub/sub{{else}}pub/sub{{end}} · loss detection {{secs .Detection}} · own announcements back in {{secs .OwnLag}} · {{end}}totals: {{.Totals.MessagesSent}} sent, {{.Totals.MessagesReceived}} received, {{.Totals.Gaps}} gaps</div>
<table>
<tr><th class="l">last {{span .Recent.Seconds}}</th><th>sent</th><th>received</th><th>keys invalidated</th><th>gaps</th><th>publish errors</th><th>flushes</th><th>lag p50</th><th>lag p99</th></tr>
<tr><td class="l"></td><td>{{.Recent.MessagesSent}}</td><td>{{.Recent.MessagesReceived}}</td><td>{{.Recent.KeysInvalidated}}</td><td>{{.Recent.Gaps}}</td><td>{{.Recent.PublishErrors}}</td><td>{{.Recent.Flushes}}</td>
<td>{{if .Recent.LagSamples}}≤ {{secs .Recent.LagP50}}{{else}}–{{end}}</td><td>{{if .Recent.LagSamples}}≤ {{secs .Recent.LagP99}}{{else}}–{{end}}</td></tr>
</table>
<table>
<tr><th class="l">channel</th><th class="l">health</th><th>last heard</th><th>last lag</th><th class="l">origins heard: last sequence number (last heard)</th></tr>
{{range .Channels}}<tr><td class="l"><code>{{.Name}}</code></td><td class="l {{ok .Healthy}}">{{if not .Subscribed}}subscribing{{else if .Healthy}}ok{{else}}silent{{end}}</td><td>{{secs .SinceHeard}} ago</td><td>{{if .LastLag}}{{secs .LastLag}}{{else}}–{{end}}</td>
<td class="l">{{range .Origins}}<code>{{.Origin}}</code>: {{.Seq}} ({{secs .SinceHeard}} ago{{if .Silent}}, <span class="bad">silent</span>{{end}})<br>{{else}}<span class="none">none yet</span>{{end}}</td></tr>
{{else}}<tr><td class="l none" colspan="5">the bus does not report its channels</td></tr>{{end}}
</table>
<table>
<tr><th class="l">recent flushes</th><th>count</th><th class="l">between</th></tr>
{{range .Flushes}}<tr><td class="l">{{.Reason}}</td><td>{{.Count}}</td><td class="l">{{clock .After}} and {{clock .Before}}</td></tr>
{{else}}<tr><td class="l none" colspan="3">none since the page started</td></tr>{{end}}
</table>
</div>
{{end}}
</body>
</html>
`
