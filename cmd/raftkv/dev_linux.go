package main

import "syscall"

// childSysProcAttr puts a dev node in its own process group, so a terminal's Ctrl-C reaches only this
// process (which then stops the nodes in order), and asks the kernel to SIGTERM the node if this process
// dies without stopping it. Pdeathsig fires when the *thread* that started the child exits; Go only ends
// threads locked with runtime.LockOSThread, which this package never does.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
