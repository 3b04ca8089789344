//go:build race

package multicast

// raceEnabled shrinks the namespace tests under the race detector.
const raceEnabled = true
