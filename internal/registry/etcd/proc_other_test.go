//go:build !linux

package etcd

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
