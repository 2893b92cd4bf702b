//go:build !linux

package main

import (
	"errors"
	"os"
	"runtime"
	"time"
)

var errNoProc = errors.New("needs Linux /proc")

func fdatasync(f *os.File) error                   { return f.Sync() }
func fsType(string) string                         { return "unknown" }
func procCPU(int) (time.Duration, error)           { return 0, errNoProc }
func procMemory(int) (rss, peak uint64, err error) { return 0, 0, errNoProc }
func cpuModel() string                             { return "unknown" }
func selfCPU() time.Duration                       { return 0 }
func kernel() string                               { return runtime.GOOS }
