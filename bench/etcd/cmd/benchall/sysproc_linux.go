package main

import "syscall"

// childSysProcAttr puts a child in its own process group, so a terminal's Ctrl-C reaches only this
// process (which then stops the children in order), and has the kernel kill the child if this process
// dies without stopping it. Pdeathsig fires when the *thread* that started the child exits; Go only ends
// threads locked with runtime.LockOSThread, which this program never does.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
