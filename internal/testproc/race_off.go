//go:build !race

package testproc

// RaceEnabled reports whether this binary (the test binary) was built with
// the race detector, so that the binaries under test can be built with it
// too (see GoBuild).
const RaceEnabled = false
