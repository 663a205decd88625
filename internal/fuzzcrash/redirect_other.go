//go:build !linux

package fuzzcrash

import (
	"errors"
	"os"
)

func redirect(*os.File) error { return errors.New("fuzzcrash: linux only") }
