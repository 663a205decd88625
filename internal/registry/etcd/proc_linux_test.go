package etcd

import "syscall"

// procAttr makes the kernel kill etcd if the test binary dies first.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
