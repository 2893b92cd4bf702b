// Package test holds raftkv's process-level tests: real raftkv processes started by the harness,
// driven over HTTP, with faults injected by signals. Nothing imports this package.
//
// The whole suite is skipped with -short. Env: RAFTKV_TEST_RACE=1 builds the binary with -race;
// RAFTKV_BINARY uses a prebuilt binary; RAFTKV_TEST_ARTIFACTS is where failure artifacts go
// (default test/artifacts, git-ignored).
package test

import (
	"os"
	"testing"

	"github.com/raftkv/raftkv/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
