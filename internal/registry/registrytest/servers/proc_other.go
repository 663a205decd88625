//go:build !linux

package servers

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
