package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// chart draws one panel per row that has a baseline: a horizontal bar per
// candidate with its median ratio to the baseline (the bar of the baseline
// is 1), whiskers for the range over the rounds, and a line at 1. Rows
// without a baseline (hit ratio, heap) are drawn with their own values.
func chart(rows []*row, title string) string {
	const (
		width   = 900
		labelW  = 330
		barH    = 16
		gap     = 6
		panelT  = 26
		plotW   = width - labelW - 90
		leftPad = 10
	)
	var body strings.Builder
	y := 50
	for _, r := range rows {
		fmt.Fprintf(&body, `<text x="%d" y="%d" class="t">%s</text>`+"\n", leftPad, y+16, html.EscapeString(r.group+": "+r.title))
		y += panelT
		// Scale: ratios (or values) up to the largest median or range end.
		type bar struct {
			name          string
			med, lo, hi   float64
			isBase, ratio bool
		}
		var bars []bar
		for _, c := range r.cands {
			b := bar{name: c, ratio: r.baseline != ""}
			if b.ratio {
				if c == r.baseline {
					b.med, b.lo, b.hi, b.isBase = 1, 1, 1, true
				} else {
					rs := r.ratios(c)
					if len(rs) == 0 {
						continue
					}
					b.med, b.lo, b.hi = median(rs), slices.Min(rs), slices.Max(rs)
				}
			} else {
				vs := r.vals[c]
				b.med, b.lo, b.hi = median(vs), slices.Min(vs), slices.Max(vs)
			}
			bars = append(bars, b)
		}
		top := 0.0
		for _, b := range bars {
			top = max(top, b.hi)
		}
		if top <= 0 || math.IsNaN(top) {
			top = 1
		}
		scale := float64(plotW) / top
		for _, b := range bars {
			w := b.med * scale
			cls := "b"
			if b.isBase {
				cls = "base"
			} else if strings.HasPrefix(b.name, "tiercache") {
				cls = "tc"
			}
			label := fmt.Sprintf("%.2fx", b.med)
			if !b.ratio {
				label = fmtVal(b.med, r.unit)
			}
			fmt.Fprintf(&body, `<text x="%d" y="%d" class="l">%s</text>`, labelW-6, y+barH-4, html.EscapeString(b.name))
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%.1f" height="%d" class="%s"/>`, labelW, y, max(w, 1), barH, cls)
			if b.hi > b.lo {
				fmt.Fprintf(&body, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="w"/>`, float64(labelW)+b.lo*scale, float64(labelW)+b.hi*scale, y+barH/2, y+barH/2)
			}
			fmt.Fprintf(&body, `<text x="%.1f" y="%d" class="v">%s</text>`+"\n", float64(labelW)+max(w, b.hi*scale)+4, y+barH-4, label)
			y += barH + gap
		}
		if r.baseline != "" {
			x := float64(labelW) + scale
			fmt.Fprintf(&body, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="one"/>`+"\n", x, x, y-len(bars)*(barH+gap)-2, y-gap+2)
		}
		y += 12
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", width, y+20, width, y+20)
	b.WriteString(`<style>.t{font-size:13px;font-weight:bold}.l{font-size:11px;text-anchor:end}.v{font-size:11px}` +
		`.b{fill:#9aa7b8}.tc{fill:#2f6db5}.base{fill:#555}.w{stroke:#000;stroke-width:1}.one{stroke:#c33;stroke-dasharray:3 2}` +
		`.h{font-size:15px;font-weight:bold}.s{font-size:11px;fill:#444}</style>` + "\n")
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/><text x="10" y="20" class="h">%s</text>`, html.EscapeString(title))
	b.WriteString(`<text x="10" y="38" class="s">bars: median ratio to the scenario's baseline (dark; dashed line = 1x) over the rounds, whiskers: min–max; blue = tiercache; lower is better except hit ratio</text>` + "\n")
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}
