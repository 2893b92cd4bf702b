package main

// acl.go: the ACL client commands: acl bootstrap, acl token create|list|delete, acl policy create|list|delete.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/raftkv/raftkv/acl"
)

const aclUsage = `Usage: raftkv acl <command> [flags] [args]

Commands:
  bootstrap          create the first management token (once per cluster) and print its secret
  token create       create a token holding policies (--policy, repeatable) or --management
  token list         list tokens (accessor ids, policies; never secrets)
  token delete ID    delete the token with accessor id ID
  policy create      create or replace a policy (--name, --rule PREFIX=ACCESS repeatable, --cluster, --acl, --session, or --file)
  policy list        list policies and their rules
  policy delete NAME delete a policy

Every command takes --addr and --token (or RAFTKV_TOKEN). See docs/security.md for the model.
Run "raftkv acl <command> --help" for a command's flags.
`

func runACL(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "raftkv: acl needs a command\n\n%s", aclUsage)
		return exitUsage
	}
	sub := args[0]
	if (sub == "token" || sub == "policy") && len(args) > 1 {
		sub, args = sub+" "+args[1], args[1:]
	}
	switch sub {
	case "bootstrap":
		return runACLBootstrap(ctx, args[1:], stdout, stderr)
	case "token create":
		return runACLTokenCreate(ctx, args[1:], stdout, stderr)
	case "token list":
		return runACLList(ctx, "token list", "/v1/acl/tokens", args[1:], stdout, stderr)
	case "token delete":
		return runACLDelete(ctx, "token delete", "ID", "/v1/acl/tokens/", args[1:], stdout, stderr)
	case "policy create":
		return runACLPolicyCreate(ctx, args[1:], stdin, stdout, stderr)
	case "policy list":
		return runACLList(ctx, "policy list", "/v1/acl/policies", args[1:], stdout, stderr)
	case "policy delete":
		return runACLDelete(ctx, "policy delete", "NAME", "/v1/acl/policies/", args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, aclUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "raftkv: unknown acl command %q\n\n%s", sub, aclUsage)
	return exitUsage
}

// aclToken mirrors the API's token view.
type aclToken struct {
	AccessorID  string   `json:"accessor_id"`
	SecretID    string   `json:"secret_id,omitempty"`
	Description string   `json:"description,omitempty"`
	Policies    []string `json:"policies,omitempty"`
	Management  bool     `json:"management,omitempty"`
	CreateIndex uint64   `json:"create_index,omitempty"`
}

// aclDo sends one ACL call. ACL changes are writes that are not idempotent (a retried bootstrap would
// answer 409 and lose the secret), so they are never retried once sent.
func aclDo(ctx context.Context, c *client, method, path string, body []byte) (*response, error) {
	cl := call{method: method, path: path, body: body, write: method != http.MethodGet}
	if body != nil {
		cl.ctype = "application/json"
	}
	return c.do(ctx, cl)
}

func printToken(w io.Writer, t aclToken) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "AccessorID:\t%s\n", t.AccessorID)
	if t.SecretID != "" {
		fmt.Fprintf(tw, "SecretID:\t%s\n", t.SecretID)
	}
	if t.Management {
		fmt.Fprintf(tw, "Management:\ttrue\n")
	}
	if len(t.Policies) > 0 {
		fmt.Fprintf(tw, "Policies:\t%s\n", strings.Join(t.Policies, ", "))
	}
	if t.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", t.Description)
	}
	tw.Flush()
}

func runACLBootstrap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("acl bootstrap", "acl bootstrap [flags]", `
Create the cluster's first management token and print its secret. This works once per cluster: every
later call, on any node, fails with already_bootstrapped and names the ACL state's reset index. Keep the
secret: it is shown only now.

Lost it (every management token gone, or a bootstrap whose answer never came)? Reset, with access to a
node's host: write the reset index into the file acl-bootstrap-reset in that node's data dir, and run
acl bootstrap against that node again. It prints a new management token and removes the file; the file
allows one reset.`)
	var cf clientFlags
	cf.register(fs)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "acl bootstrap takes no arguments")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	resp, err := aclDo(ctx, c, http.MethodPost, "/v1/acl/bootstrap", []byte{})
	if err != nil {
		return fail(stderr, fmt.Errorf("acl bootstrap: %w", err))
	}
	var t aclToken
	if err := decodeBody(resp, &t); err != nil {
		return fail(stderr, fmt.Errorf("acl bootstrap: %w", err))
	}
	printToken(stdout, t)
	return exitOK
}

// listFlag collects a repeatable flag, also splitting commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func runACLTokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("acl token create", "acl token create [flags]", `
Create a token and print its accessor id and secret (shown only now). A token needs at least one
--policy, or --management for every right.`)
	var cf clientFlags
	cf.register(fs)
	var policies listFlag
	var management bool
	var desc string
	fs.Var(&policies, "policy", "policy `NAME` the token holds (repeatable, or comma-separated)")
	fs.BoolVar(&management, "management", false, "give the token every right, ACLs included")
	fs.StringVar(&desc, "description", "", "free text shown in token list")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "acl token create takes no arguments")
	}
	if len(policies) == 0 && !management {
		return usageError(fs, stderr, "give at least one --policy, or --management")
	}
	body, err := json.Marshal(map[string]any{"description": desc, "policies": []string(policies), "management": management})
	if err != nil {
		return fail(stderr, err)
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	resp, err := aclDo(ctx, c, http.MethodPost, "/v1/acl/tokens", body)
	if err != nil {
		return fail(stderr, fmt.Errorf("acl token create: %w", err))
	}
	var t aclToken
	if err := decodeBody(resp, &t); err != nil {
		return fail(stderr, fmt.Errorf("acl token create: %w", err))
	}
	printToken(stdout, t)
	return exitOK
}

func runACLPolicyCreate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("acl policy create", "acl policy create [flags]", `
Create a policy, or replace the one with the same name (tokens holding it change at once, live
watches included). Rules: --rule PREFIX=ACCESS with ACCESS read, list, write or deny (the longest
matching prefix decides; see docs/security.md), --cluster and --acl read, write or deny. Or give the
whole policy as JSON with --file (- for stdin): {"name":..,"keys":[{"prefix":..,"access":..}],..}.`)
	var cf clientFlags
	cf.register(fs)
	var keys listFlag
	var name, desc, cluster, aclAccess, session, file string
	fs.StringVar(&name, "name", "", "policy `NAME`")
	fs.StringVar(&desc, "description", "", "free text")
	fs.Var(&keys, "rule", "key rule `PREFIX=ACCESS` (repeatable); PREFIX may be empty: =read covers every key")
	fs.StringVar(&cluster, "cluster", "", "cluster operations: read (status, health, metrics), write (join, leave, remove) or deny")
	fs.StringVar(&aclAccess, "acl", "", "the ACL system: read or write (write may create any token: it is root) or deny")
	fs.StringVar(&session, "session", "", "sessions: read (list, read) or write (create, renew, destroy; a session's keys need their own rules) or deny")
	fs.StringVar(&file, "file", "", "read the policy as JSON from `FILE` (- for stdin) instead of the flags above")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "acl policy create takes no arguments")
	}
	var p *acl.Policy
	if file != "" {
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return fail(stderr, err)
		}
		if p, err = acl.ParsePolicy(b); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
	} else {
		p = &acl.Policy{Name: name, Description: desc}
		for _, k := range keys {
			prefix, access, ok := strings.Cut(k, "=")
			if !ok {
				return usageError(fs, stderr, "--rule %q: want PREFIX=ACCESS", k)
			}
			a, err := acl.ParseAccess(access)
			if err != nil {
				return usageError(fs, stderr, "--rule %q: %v", k, err)
			}
			p.Keys = append(p.Keys, acl.KeyRule{Prefix: prefix, Access: a})
		}
		var err error
		if p.Cluster, err = acl.ParseAccess(cluster); err != nil {
			return usageError(fs, stderr, "--cluster: %v", err)
		}
		if p.ACL, err = acl.ParseAccess(aclAccess); err != nil {
			return usageError(fs, stderr, "--acl: %v", err)
		}
		if p.Session, err = acl.ParseAccess(session); err != nil {
			return usageError(fs, stderr, "--session: %v", err)
		}
		if err := p.Validate(); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fail(stderr, err)
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	if _, err := aclDo(ctx, c, http.MethodPost, "/v1/acl/policies", body); err != nil {
		return fail(stderr, fmt.Errorf("acl policy create: %w", err))
	}
	fmt.Fprintf(stdout, "policy %s saved\n", p.Name)
	return exitOK
}

func runACLList(ctx context.Context, what, path string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("acl "+what, "acl "+what+" [flags]", "\nList them as the answering node has applied them.")
	var cf clientFlags
	cf.register(fs)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print the raw JSON answer")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "acl %s takes no arguments", what)
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	resp, err := aclDo(ctx, c, http.MethodGet, path, nil)
	if err != nil {
		return fail(stderr, fmt.Errorf("acl %s: %w", what, err))
	}
	if asJSON {
		fmt.Fprintf(stdout, "%s\n", resp.body)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	if path == "/v1/acl/tokens" {
		var toks []aclToken
		if err := decodeBody(resp, &toks); err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintln(tw, "ACCESSOR ID\tPOLICIES\tDESCRIPTION")
		for _, t := range toks {
			pols := strings.Join(t.Policies, ",")
			if t.Management {
				pols = "(management)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.AccessorID, orDash(pols), orDash(t.Description))
		}
		return exitOK
	}
	var ps []acl.Policy
	if err := decodeBody(resp, &ps); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(tw, "NAME\tRULES\tDESCRIPTION")
	for _, p := range ps {
		var rules []string
		for _, k := range p.Keys {
			rules = append(rules, fmt.Sprintf("key %q %s", k.Prefix, k.Access))
		}
		if p.Cluster != acl.AccessNone {
			rules = append(rules, "cluster "+p.Cluster.String())
		}
		if p.ACL != acl.AccessNone {
			rules = append(rules, "acl "+p.ACL.String())
		}
		if p.Session != acl.AccessNone {
			rules = append(rules, "session "+p.Session.String())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, orDash(strings.Join(rules, "; ")), orDash(p.Description))
	}
	return exitOK
}

func runACLDelete(ctx context.Context, what, arg, prefix string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("acl "+what, "acl "+what+" [flags] "+arg, "\nDelete it, cluster-wide.")
	var cf clientFlags
	cf.register(fs)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "acl %s needs exactly one %s", what, arg)
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	if _, err := aclDo(ctx, c, http.MethodDelete, prefix+url.PathEscape(pos[0]), nil); err != nil {
		return fail(stderr, fmt.Errorf("acl %s: %w", what, err))
	}
	fmt.Fprintf(stdout, "deleted %s\n", pos[0])
	return exitOK
}
