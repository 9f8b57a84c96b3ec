package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// row is one scenario of the table: a value per candidate per round, and
// ratios to the baseline computed round by round (candidates are measured
// interleaved inside a round, so drift in the machine's load hits them
// alike).
type row struct {
	group    string // section title
	title    string
	unit     string // of the values
	baseline string // candidate the ratios divide by; "" for none
	target   string // the design target, as text
	cands    []string
	vals     map[string][]float64
	notes    map[string]string // per candidate, e.g. loader calls
}

func newRow(group, title, unit, baseline, target string) *row {
	return &row{group: group, title: title, unit: unit, baseline: baseline, target: target,
		vals: map[string][]float64{}, notes: map[string]string{}}
}

// add records one round's value of cand.
func (r *row) add(cand string, v float64) {
	if _, ok := r.vals[cand]; !ok {
		r.cands = append(r.cands, cand)
	}
	r.vals[cand] = append(r.vals[cand], v)
}

func (r *row) note(cand, text string) { r.notes[cand] = text }

// ratios returns cand's value divided by the baseline's, round by round.
func (r *row) ratios(cand string) []float64 {
	base, vs := r.vals[r.baseline], r.vals[cand]
	n := min(len(base), len(vs))
	out := make([]float64, 0, n)
	for i := range n {
		if base[i] > 0 {
			out = append(out, vs[i]/base[i])
		}
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// quantile returns the q-quantile (0..1) of xs by nearest rank.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fmtVal(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case unit == "%":
		return fmt.Sprintf("%.1f %%", v)
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

// markdown renders rows as one table per group.
func markdown(rows []*row, rounds int, header string) string {
	var b strings.Builder
	b.WriteString(header)
	group := ""
	for _, r := range rows {
		if r.group != group {
			group = r.group
			fmt.Fprintf(&b, "\n#### %s\n\n", group)
			b.WriteString("| scenario | candidate | median | ratio to baseline: median [min – max] | target |\n|---|---|---|---|---|\n")
		}
		for i, c := range r.cands {
			title, target := "", ""
			if i == 0 {
				title, target = r.title, r.target
			}
			ratio := ""
			switch {
			case r.baseline == "":
			case c == r.baseline:
				ratio = "baseline"
			default:
				rs := r.ratios(c)
				ratio = fmt.Sprintf("**%.2fx** [%.2f – %.2f]", median(rs), slices.Min(rs), slices.Max(rs))
			}
			val := fmtVal(median(r.vals[c]), r.unit)
			if n := r.notes[c]; n != "" {
				val += "; " + n
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", title, c, val, ratio, target)
		}
	}
	fmt.Fprintf(&b, "\nMedians over %d rounds; each ratio is taken inside a round, then the median and range of those.\n", rounds)
	return b.String()
}
