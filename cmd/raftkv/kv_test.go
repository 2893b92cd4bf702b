package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPutGetDelete(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)

	code, out, errOut := cli(t, "", "put", "--addr", addr, "greeting", "hello")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "1\n", out)

	code, out, errOut = cli(t, "", "get", "--addr", addr, "greeting")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "hello", out, "the raw value, no newline added")

	code, out, errOut = cli(t, "", "put", "--addr", addr, "greeting", "bonjour")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "2\n", out)

	code, out, errOut = cli(t, "", "get", "-v", "--addr", addr, "greeting")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "bonjour", out)
	assert.Equal(t, "create_index=1 mod_index=2\n", errOut)

	code, out, errOut = cli(t, "", "delete", "--addr", addr, "greeting")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "3\n", out)
	assert.Empty(t, errOut)
	_, ok := f.entry("greeting")
	assert.False(t, ok)

	code, out, errOut = cli(t, "", "delete", "--addr", addr, "greeting")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "4\n", out)
	assert.Contains(t, errOut, "did not exist")
}

func TestKeysArePathEscapedPerSegment(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	key := "dir one/sub%dir/ü?x#y"
	code, _, errOut := cli(t, "", "put", "--addr", addr, key, "v")
	require.Equal(t, 0, code, errOut)
	e, ok := f.entry(key)
	require.True(t, ok, "the server decoded the same key")
	assert.Equal(t, "v", string(e.Value))
	assert.Equal(t, []string{"PUT /v1/kv/dir%20one/sub%25dir/%C3%BC%3Fx%23y"}, f.requestLog())

	assert.Equal(t, "/v1/kv/a/b/c", kvPath("a/b/c"))
	assert.Equal(t, "/v1/kv//lead/trail/", kvPath("/lead/trail/"))
}

func TestGetStaleAndBinaryValue(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	bin := []byte{0, 1, 2, 0xff, '\n'}
	code, _, errOut := cli(t, string(bin), "put", "--addr", addr, "bin")
	require.Equal(t, 0, code, errOut)

	code, out, errOut := cli(t, "", "get", "bin", "--stale", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, bin, []byte(out))
	assert.Equal(t, "GET /v1/kv/bin?consistency=stale", f.requestLog()[1])
}

func TestPutValueFromStdin(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)

	code, _, errOut := cli(t, "from stdin\n", "put", "--addr", addr, "a")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = cli(t, "dash\x00", "put", "--addr", addr, "b", "-")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = cli(t, "", "put", "--addr", addr, "empty")
	require.Equal(t, 0, code, errOut)

	a, _ := f.entry("a")
	b, _ := f.entry("b")
	empty, ok := f.entry("empty")
	assert.Equal(t, "from stdin\n", string(a.Value))
	assert.Equal(t, "dash\x00", string(b.Value))
	assert.True(t, ok)
	assert.Empty(t, empty.Value)
}

func TestFlagsAfterPositionalArgs(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	code, out, errOut := cli(t, "", "put", "k", "v1", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "1\n", out)
	code, out, errOut = cli(t, "", "put", "k", "--cas", "1", "v2", "--addr", addr, "--timeout=5s")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "2\n", out)
	code, out, errOut = cli(t, "", "get", "k", "--addr", addr, "-v")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "v2", out)

	// "--" ends the flags: a value may start with a dash.
	code, _, errOut = cli(t, "", "put", "--addr", addr, "--", "dash", "-5")
	require.Equal(t, 0, code, errOut)
	e, _ := f.entry("dash")
	assert.Equal(t, "-5", string(e.Value))
}

func TestAddrFromEnvironment(t *testing.T) {
	_, addr := newFakeAPI(t)
	t.Setenv("RAFTKV_ADDR", "http://"+addr+"/")
	code, out, errOut := cli(t, "", "put", "k", "v")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "1\n", out)
}

func TestCASFailureExits1WithCurrentIndex(t *testing.T) {
	t.Parallel()
	_, addr := newFakeAPI(t)
	for i := 0; i < 3; i++ {
		code, _, errOut := cli(t, "", "put", "--addr", addr, "k", "v")
		require.Equal(t, 0, code, errOut)
	}

	code, out, errOut := cli(t, "", "put", "--addr", addr, "--cas", "2", "k", "new")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "raftkv: put \"k\": cas failed, current index is 3")
	assert.Contains(t, errOut, "code cas_mismatch")

	code, _, errOut = cli(t, "", "put", "--addr", addr, "--cas", "0", "k", "new")
	assert.Equal(t, 1, code, errOut)

	code, _, errOut = cli(t, "", "delete", "--addr", addr, "--cas", "1", "k")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "current index is 3")

	code, out, errOut = cli(t, "", "put", "--addr", addr, "--cas", "3", "k", "new")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "4\n", out)
	code, _, errOut = cli(t, "", "put", "--addr", addr, "--cas", "0", "fresh", "x")
	require.Equal(t, 0, code, errOut)
}

func TestNotFoundExits1(t *testing.T) {
	t.Parallel()
	_, addr := newFakeAPI(t)
	code, out, errOut := cli(t, "", "get", "--addr", addr, "missing")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "raftkv: get \"missing\": "+addr+" answered 404: \"key not found\" (code key_not_found)\n", errOut)
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	_, addr := newFakeAPI(t)
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"get without key", []string{"get", "--addr", addr}, "get takes exactly one KEY"},
		{"get two keys", []string{"get", "--addr", addr, "a", "b"}, "get takes exactly one KEY"},
		{"put without key", []string{"put", "--addr", addr}, "put takes KEY"},
		{"put too many", []string{"put", "--addr", addr, "a", "b", "c"}, "put takes KEY"},
		{"empty key", []string{"get", "--addr", addr, ""}, "empty key"},
		{"unknown flag", []string{"get", "--addr", addr, "--bogus", "k"}, "flag provided but not defined: -bogus"},
		{"bad cas", []string{"put", "--addr", addr, "--cas", "x", "k", "v"}, `invalid value "x" for flag -cas`},
		{"negative cas", []string{"delete", "--addr", addr, "--cas=-1", "k"}, "invalid value"},
		{"bad addr", []string{"get", "--addr", "nonsense", "k"}, `invalid node address "nonsense"`},
		{"empty addr", []string{"get", "--addr", ",", "k"}, "--addr is empty"},
		{"bad timeout", []string{"get", "--addr", addr, "--timeout", "0s", "k"}, "--timeout must be positive"},
		{"list two prefixes", []string{"list", "--addr", addr, "a", "b"}, "at most one PREFIX"},
		{"list negative limit", []string{"list", "--addr", addr, "--limit", "-1"}, "must not be negative"},
		{"cluster without command", []string{"cluster"}, "cluster needs a command"},
		{"cluster unknown", []string{"cluster", "explode"}, `unknown cluster command "explode"`},
		{"cluster status args", []string{"cluster", "status", "--addr", addr, "x"}, "takes no arguments"},
		{"cluster join no addr", []string{"cluster", "join", "--addr", addr}, "needs the gossip ADDR"},
		{"cluster leave two nodes", []string{"cluster", "leave", "--addr", addr + "," + addr}, "exactly one --addr"},
		{"cluster remove no id", []string{"cluster", "remove", "--addr", addr}, "exactly one member ID"},
		{"version args", []string{"version", "x"}, "version takes no arguments"},
		{"dev args", []string{"dev", "x"}, "dev takes no arguments"},
		{"dev zero nodes", []string{"dev", "--nodes", "0"}, "--nodes must be at least 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, "", tc.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tc.msg)
			assert.Contains(t, errOut, "Usage")
		})
	}
}

func TestHelpExits0OnStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"get", "--help"}, {"help", "put"},
		{"list", "-h"}, {"cluster", "--help"}, {"cluster", "status", "--help"}, {"help", "cluster", "join"}, {"dev", "--help"}} {
		code, out, errOut := cli(t, "", args...)
		assert.Equal(t, 0, code, args)
		assert.Contains(t, out, "Usage", args)
		assert.Empty(t, errOut, args)
	}
	_, out, _ := cli(t, "", "--help")
	for _, want := range []string{"serve", "dev", "put KEY", "get KEY", "delete KEY", "list [PREFIX]",
		"cluster status", "cluster join", "cluster leave", "cluster remove", "RAFTKV_ADDR", "Example"} {
		assert.Contains(t, out, want)
	}
	_, out, _ = cli(t, "", "get", "--help")
	assert.Contains(t, out, "-v, --verbose")
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version"} {
		code, out, _ := cli(t, "", arg)
		assert.Equal(t, 0, code)
		assert.Regexp(t, `^raftkv dev \(go[^,]+, [a-z0-9]+/[a-z0-9]+\)\n$`, out)
	}
}

func TestListPaginatesAcrossPages(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	values := map[string]string{
		"app/a":     "1",
		"app/b c":   "two words",
		"app/c":     "tab\there",
		"app/d":     "\xff\xfe",
		"app/e":     "base64:looks-encoded",
		"other/x":   "not listed",
		"app/f&g=h": "", // query-escaping of the continuation key matters
	}
	for k, v := range values {
		code, _, errOut := cli(t, v, "put", "--addr", addr, k)
		require.Equal(t, 0, code, errOut)
	}
	before := len(f.requestLog())

	code, out, errOut := cli(t, "", "list", "app/", "--limit", "2", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "app/a\t1\n"+
		"app/b c\ttwo words\n"+
		"app/c\tbase64:dGFiCWhlcmU=\n"+
		"app/d\tbase64://4=\n"+
		"app/e\tbase64:YmFzZTY0Omxvb2tzLWVuY29kZWQ=\n"+
		"app/f&g=h\t\n", out)
	assert.Equal(t, []string{
		"GET /v1/kv?limit=2&prefix=app%2F",
		"GET /v1/kv?after=app%2Fb+c&limit=2&prefix=app%2F",
		"GET /v1/kv?after=app%2Fd&limit=2&prefix=app%2F",
	}, f.requestLog()[before:], "three pages")

	// --max stops early and asks only for what it needs.
	before = len(f.requestLog())
	code, out, errOut = cli(t, "", "list", "app/", "--limit", "2", "--max", "3", "--stale", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "app/a\t1\napp/b c\ttwo words\napp/c\tbase64:dGFiCWhlcmU=\n", out)
	assert.Equal(t, []string{
		"GET /v1/kv?consistency=stale&limit=2&prefix=app%2F",
		"GET /v1/kv?after=app%2Fb+c&consistency=stale&limit=1&prefix=app%2F",
	}, f.requestLog()[before:])

	// No prefix lists everything.
	code, out, errOut = cli(t, "", "list", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, 7, strings.Count(out, "\n"))
}

func TestListJSON(t *testing.T) {
	t.Parallel()
	_, addr := newFakeAPI(t)
	for _, k := range []string{"a", "b", "c"} {
		code, _, errOut := cli(t, "v-"+k, "put", "--addr", addr, k)
		require.Equal(t, 0, code, errOut)
	}
	code, out, errOut := cli(t, "", "list", "--json", "--limit", "2", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	var got []listEntry
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Len(t, got, 3)
	assert.Equal(t, listEntry{Key: "c", Value: []byte("v-c"), CreateIndex: 3, ModIndex: 3}, got[2])
	assert.Contains(t, out, `"value":"di1h"`, "values stay base64, as sent")

	code, out, errOut = cli(t, "", "list", "--json", "nothing-here", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "[]\n", out)
}

func TestDisplayValue(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "plain text ü", displayValue([]byte("plain text ü")))
	assert.Equal(t, "", displayValue(nil))
	assert.Equal(t, "base64:YQpi", displayValue([]byte("a\nb")))
	assert.Equal(t, "base64:f38=", displayValue([]byte{0x7f, 0x7f}))
	assert.Equal(t, "base64:woU=", displayValue([]byte("\u0085")), "C1 control")
}

// The command functions take their streams and context directly.
func TestCommandFunctionsDirectly(t *testing.T) {
	t.Parallel()
	_, addr := newFakeAPI(t)
	var out, errOut bytes.Buffer
	code := runPut(context.Background(), []string{"--addr", addr, "k"}, strings.NewReader("v"), &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	out.Reset()
	code = runGet(context.Background(), []string{"k", "--addr", addr}, nil, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	assert.Equal(t, "v", out.String())
}

func TestServerRejectsInvalidInputExit2(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(func(w http.ResponseWriter, r *http.Request, n int) bool {
		writeFakeError(w, 413, "value_too_large", "value of 5 bytes exceeds the limit of 4", nil)
		return true
	})
	code, _, errOut := cli(t, "", "put", "--addr", addr, "k", "12345")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `"value of 5 bytes exceeds the limit of 4" (code value_too_large)`)
	assert.NotContains(t, errOut, "Usage", "a server rejection is not a local usage error")
	assert.Len(t, f.requestLog(), 1)
}
