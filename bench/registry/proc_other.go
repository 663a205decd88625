//go:build !linux

package main

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }

// raiseFDLimit reports no limit: nothing is checked off Linux.
func raiseFDLimit() uint64 { return 0 }
