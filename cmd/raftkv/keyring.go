package main

// keyring.go: `raftkv keyring`: the gossip encryption keyring of a running cluster, and new keys.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
)

const keyringUsage = `Usage: raftkv keyring <command> [flags] [KEY]

Commands:
  generate       print a new random gossip key (32 bytes, base64), for --gossip-key
  list           show every key the live members hold, how many hold it, and which one encrypts
  install KEY    add KEY to every live member's keyring (it decrypts with it from then on)
  use KEY        make KEY the one every live member encrypts with (install it everywhere first)
  remove KEY     drop KEY from every live member (not the one in use)

Rotation without downtime: install the new key, use it, then remove the old one. Each operation asks
every live member in turn over the node port and is safe to repeat; a member that fails is named (exit
status 3): bring it back and repeat. Keyrings are saved in each node's data dir and survive restarts.

Client flags as for every client command (--addr, --cacert, --cert, --key, --timeout).
`

func runKeyring(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "raftkv: keyring needs a command\n\n%s", keyringUsage)
		return exitUsage
	}
	switch args[0] {
	case "generate":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "raftkv: keyring generate takes no arguments\n")
			return exitUsage
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
		return exitOK
	case "list", "install", "use", "remove":
		return runKeyringOp(ctx, args[0], args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, keyringUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "raftkv: unknown keyring command %q\n\n%s", args[0], keyringUsage)
	return exitUsage
}

type keyringAnswer struct {
	Nodes   int               `json:"nodes"`
	Keys    map[string]int    `json:"keys"`
	Primary map[string]int    `json:"primary"`
	Errors  map[string]string `json:"errors"`
}

func runKeyringOp(ctx context.Context, op string, args []string, stdout, stderr io.Writer) int {
	synopsis := "keyring " + op + " [flags] KEY"
	if op == "list" {
		synopsis = "keyring list [flags]"
	}
	fs := newFlagSet("keyring "+op, synopsis, keyringUsage)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	want := 1
	if op == "list" {
		want = 0
	}
	if len(pos) != want {
		return usageError(fs, stderr, "keyring %s takes %d argument(s)", op, want)
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	cl := call{method: http.MethodGet, path: "/v1/operator/keyring"}
	if op != "list" {
		if k, err := base64.StdEncoding.DecodeString(pos[0]); err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return usageError(fs, stderr, "KEY must be 16, 24 or 32 bytes in base64 (raftkv keyring generate makes one)")
		}
		body, _ := json.Marshal(map[string]string{"op": op, "key": pos[0]})
		// Every operation is idempotent on every member, so a retry after an unknown outcome is safe.
		cl = call{method: http.MethodPost, path: "/v1/operator/keyring", body: body, ctype: "application/json"}
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return fail(stderr, fmt.Errorf("keyring %s: %w", op, err))
	}
	if *asJSON {
		stdout.Write(resp.body)
		fmt.Fprintln(stdout)
		return exitOK
	}
	var a keyringAnswer
	if err := json.Unmarshal(resp.body, &a); err != nil {
		return fail(stderr, fmt.Errorf("keyring %s: bad answer from %s: %w", op, resp.node, err))
	}
	keys := make([]string, 0, len(a.Keys))
	for k := range a.Keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		mark := ""
		if a.Primary[k] > 0 {
			mark = fmt.Sprintf("  (in use on %d)", a.Primary[k])
		}
		fmt.Fprintf(stdout, "%s  %d/%d nodes%s\n", k, a.Keys[k], a.Nodes, mark)
	}
	return exitOK
}
