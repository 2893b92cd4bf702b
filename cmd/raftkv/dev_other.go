//go:build !linux

package main

import "syscall"

// childSysProcAttr: without Pdeathsig (Linux only) the nodes share our process group, so a terminal's
// Ctrl-C reaches them directly too; that is what stops them if this process is killed outright.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
