package main

import (
	"encoding/xml"
	"math"
	"strings"
	"testing"
)

// The scenarios need the Redis harness and minutes; these tests check the
// reporting on made-up numbers, so a broken table or chart shows up without
// them.

func sampleRows() []*row {
	r := newRow("L2 hit", "sequential", "µs", "raw", "≤ 1.15x")
	for _, v := range []float64{10, 20, 10} {
		r.add("raw", v)
	}
	for _, v := range []float64{11, 30, 12} {
		r.add("tiercache Get", v)
	}
	r.note("tiercache Get", "0 allocs/op")
	h := newRow("Hit ratio", "zipf", "%", "", "")
	h.add("otter", 66.5)
	h.add("otter", 66.7)
	return []*row{r, h}
}

func TestRatiosAreTakenPerRound(t *testing.T) {
	r := sampleRows()[0]
	got := r.ratios("tiercache Get")
	want := []float64{1.1, 1.5, 1.2}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("ratios = %v, want %v", got, want)
		}
	}
	if m := median(got); math.Abs(m-1.2) > 1e-9 {
		t.Errorf("median = %v, want 1.2", m)
	}
	if q := quantile([]float64{5, 1, 4, 2, 3}, 0.99); q != 5 {
		t.Errorf("p99 of 1..5 = %v, want 5", q)
	}
}

func TestMarkdown(t *testing.T) {
	md := markdown(sampleRows(), 3, "header\n")
	for _, want := range []string{"#### L2 hit", "| sequential | raw | 10.0 µs | baseline | ≤ 1.15x |", "**1.20x** [1.10 – 1.50]", "0 allocs/op", "#### Hit ratio", "66.6 %"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	svg := chart(sampleRows(), "title <&>")
	d := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects != 1+2+1 { // background, two L2 bars, one hit-ratio bar
		t.Errorf("chart has %d rects, want 4", rects)
	}
}

func TestSlotOf(t *testing.T) {
	// Known values from the Redis Cluster specification's examples.
	for key, want := range map[string]uint16{"foo": 12182, "{user1000}.following": slotOf("user1000"), "123456789": 0x31C3 % 16384} {
		if got := slotOf(key); got != want {
			t.Errorf("slotOf(%q) = %d, want %d", key, got, want)
		}
	}
}
