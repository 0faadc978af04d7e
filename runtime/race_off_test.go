//go:build !race

package runtime

// raceOn is set when the race detector runs: it makes the transport an
// order of magnitude slower, so the largest copies of the tests shrink.
const raceOn = false
