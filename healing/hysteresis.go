package healing

// Hysteresis turns a stream of pass/fail results into an up/down status that
// flips only after Rise passes or Fall failures in a row, so that one blip
// neither marks a healthy thing down nor a sick thing up. The zero value is
// not useful; create one with NewHysteresis.
type Hysteresis struct {
	rise, fall int
	up         bool
	passes     int // passes in a row
	fails      int // failures in a row
}

// NewHysteresis returns a Hysteresis with the given status. rise and fall
// below 1 count as 1 (flip on the first result).
func NewHysteresis(rise, fall int, up bool) Hysteresis {
	return Hysteresis{rise: max(rise, 1), fall: max(fall, 1), up: up}
}

// Record adds one result and reports whether the status flipped.
func (h *Hysteresis) Record(pass bool) (changed bool) {
	if pass {
		h.passes++
		h.fails = 0
		if !h.up && h.passes >= h.rise {
			h.up = true
			return true
		}
		return false
	}
	h.fails++
	h.passes = 0
	if h.up && h.fails >= h.fall {
		h.up = false
		return true
	}
	return false
}

// Set forces the status and clears both runs; it reports whether the status
// changed.
func (h *Hysteresis) Set(up bool) (changed bool) {
	changed = h.up != up
	h.up, h.passes, h.fails = up, 0, 0
	return changed
}

// Up reports the status.
func (h *Hysteresis) Up() bool { return h.up }

// Passes returns the current run of passes (zero after a failure).
func (h *Hysteresis) Passes() int { return h.passes }

// Failures returns the current run of failures (zero after a pass).
func (h *Hysteresis) Failures() int { return h.fails }
