// Package fuzzcrash makes a fuzzing worker's dying words visible.
//
// Go's fuzzer starts each worker with its standard error on /dev/null. A
// panic inside the fuzz function is recovered and reported with its
// input, but a panic on another goroutine (a connection's read or write
// loop) kills the worker silently: the coordinator reports only "fuzzing
// process hung or terminated unexpectedly", often while minimizing, with an
// input that may pass on replay. Fuzz targets that start goroutines call
// Capture first; scripts/test.sh sets WEFT_FUZZ_STDERR to a directory and
// prints what the workers wrote there when a run fails.
package fuzzcrash

import (
	"os"
	"strings"
)

// EnvDir names the directory for the workers' standard error.
const EnvDir = "WEFT_FUZZ_STDERR"

// Capture sends this process's standard error to a new file in
// $WEFT_FUZZ_STDERR when the process is a fuzzing worker and the variable
// is set; otherwise it does nothing.
func Capture() {
	dir := os.Getenv(EnvDir)
	if dir == "" || !isWorker(os.Args) {
		return
	}
	f, err := os.CreateTemp(dir, "worker-*.stderr")
	if err != nil {
		return
	}
	// The file stays open for the life of the worker, as fd 2.
	if redirect(f) != nil {
		_ = f.Close()
	}
}

func isWorker(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-test.fuzzworker") {
			return true
		}
	}
	return false
}
