//go:build !linux

package main

import "syscall"

// childSysProcAttr: elsewhere the children share this process's group (a terminal's Ctrl-C reaches them
// too, and they stop themselves) and outlive a benchall that is killed outright. benchall is meant for
// Linux; this only keeps it building.
func childSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
