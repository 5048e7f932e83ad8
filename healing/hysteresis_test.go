package healing

import "testing"

func TestHysteresis(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		up         bool
		results    string // p = pass, f = fail
		flips      string // for each result: . no change, ^ went up, v went down
	}{
		{"blips do not flip", 2, 3, true, "ffpffpf", "......."},
		{"fall in a row", 2, 3, true, "fff", "..v"},
		{"rise in a row", 2, 3, false, "pfpp", "...^"},
		{"down stays down on failures", 2, 3, false, "ffff", "...."},
		{"full cycle", 2, 3, true, "fffppfffpp", "..v.^..v.^"},
		{"zero rise and fall flip at once", 0, 0, true, "fpfp", "v^v^"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHysteresis(tt.rise, tt.fall, tt.up)
			for i, r := range tt.results {
				changed := h.Record(r == 'p')
				want := tt.flips[i]
				if changed != (want != '.') {
					t.Fatalf("result %d (%c): changed = %v, want %c", i, r, changed, want)
				}
				if changed && h.Up() != (want == '^') {
					t.Fatalf("result %d: up = %v after flip %c", i, h.Up(), want)
				}
			}
		})
	}
	h := NewHysteresis(2, 3, true)
	h.Record(false)
	if h.Failures() != 1 || h.Passes() != 0 {
		t.Fatalf("runs = %d passes, %d failures", h.Passes(), h.Failures())
	}
	if !h.Set(false) || h.Up() || h.Failures() != 0 || h.Set(false) {
		t.Fatal("Set(false) did not report the change once and clear the runs")
	}
}
