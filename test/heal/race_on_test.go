//go:build race

package heal

// raceEnabled reports whether the tests run with the race detector; healgate
// is then built with it too.
const raceEnabled = true
