package fuzzcrash

import (
	"os"
	"syscall"
)

// redirect makes fd 2 a duplicate of f, so the runtime's own panic and
// fatal-error output lands in f.
func redirect(f *os.File) error { return syscall.Dup3(int(f.Fd()), 2, 0) }
