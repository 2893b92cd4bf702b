// Package bench holds only this test: bench/etcd is a module of its own (so raftkv never depends on
// etcd) that builds raftkv's packages through a replace directive, and `make test` never reaches it.
package bench

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEtcdModuleKeepsUpWithRaftkv fails when a dependency bump in raftkv's go.mod has not been carried
// into bench/etcd/go.mod. The go command then refuses to build benchall ("updates to go.mod needed"),
// so `make bench` breaks on a fresh machine while every other test stays green: it happened when
// prometheus/client_golang went from 1.23.2 to 1.25.0. The fix is `cd bench/etcd && go mod tidy`.
func TestEtcdModuleKeepsUpWithRaftkv(t *testing.T) {
	root := readRequires(t, filepath.Join("..", "go.mod"))
	etcd := readRequires(t, filepath.Join("etcd", "go.mod"))
	require.NotEmpty(t, root)
	require.NotEmpty(t, etcd)
	for path, want := range root {
		got, ok := etcd[path]
		if !ok {
			continue // not in etcd's build; if it were, tidy would have listed it
		}
		assert.Falsef(t, versionLess(got, want),
			"bench/etcd/go.mod requires %s %s, raftkv requires %s: run `cd bench/etcd && go mod tidy`", path, got, want)
	}
}

// readRequires returns the module versions a go.mod requires (single-line and block form).
func readRequires(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	reqs := map[string]string{}
	inBlock := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "require (":
			inBlock = true
			continue
		case inBlock && line == ")":
			inBlock = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !inBlock:
			continue
		}
		if fields := strings.Fields(line); len(fields) == 2 {
			reqs[fields[0]] = fields[1]
		}
	}
	require.NoError(t, sc.Err())
	return reqs
}

// versionLess orders module versions (vMAJOR.MINOR.PATCH[-pre][+meta]) as semver does; pseudo-versions
// compare by their timestamp, which is how their pre-release part sorts.
func versionLess(a, b string) bool {
	an, apre := splitVersion(a)
	bn, bpre := splitVersion(b)
	for i := range an {
		if an[i] != bn[i] {
			return an[i] < bn[i]
		}
	}
	switch {
	case apre == bpre:
		return false
	case apre == "":
		return false // a release sorts after its pre-releases
	case bpre == "":
		return true
	}
	return apre < bpre
}

func splitVersion(v string) ([3]int, string) {
	v = strings.TrimPrefix(v, "v")
	v, _, _ = strings.Cut(v, "+")
	core, pre, _ := strings.Cut(v, "-")
	var n [3]int
	for i, p := range strings.SplitN(core, ".", 3) {
		n[i], _ = strconv.Atoi(p)
	}
	return n, pre
}

func TestVersionLess(t *testing.T) {
	assert.True(t, versionLess("v1.23.2", "v1.25.0"))
	assert.False(t, versionLess("v1.25.0", "v1.23.2"))
	assert.False(t, versionLess("v1.25.0", "v1.25.0"))
	assert.True(t, versionLess("v1.25.0-rc.1", "v1.25.0"))
	assert.True(t, versionLess("v0.0.0-20250101000000-abc", "v0.0.0-20260101000000-def"))
	assert.True(t, versionLess("v1.9.0", "v1.10.0"))
}
