package main

// flags.go: what every subcommand shares: a FlagSet with a readable usage, parsing that accepts flags
// after positional arguments, the client flags, and the one mapping from an error to an exit status.

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/raftkv/raftkv/store"
	"github.com/raftkv/raftkv/tlsutil"
)

// Exit statuses.
const (
	exitOK          = 0
	exitNotFound    = 1 // key not found, unknown member, cas failed
	exitUsage       = 2 // bad flags or arguments (also a request the server rejected as invalid)
	exitUnavailable = 3 // unavailable, indeterminate, timed out, any other failure
	// exitNodeFailed: serve only. An operator must act before the node can serve again, and the log
	// says what to do: the node stopped because its own data failed an integrity check (a log entry
	// whose checksum does not match), or it refused to start on its data dir (another node's, corrupt,
	// in use, or partly wiped). Restarting it as is fails the same way: a supervisor should not loop.
	exitNodeFailed = 4
	// exitDenied: the cluster's ACLs refused the request (401 unauthenticated, 403 permission_denied):
	// retrying will not help, another token might.
	exitDenied = 5
	// exitLockLost: lock and elect only. The lock or leadership was lost while held (lock stopped its
	// command): the session ended, could not be renewed for its TTL, or the key changed hands.
	exitLockLost = 6
)

// newFlagSet returns a FlagSet whose usage reads "Usage: raftkv <synopsis>", the description, and the
// flags in --name form.
func newFlagSet(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: raftkv %s\n\n%s\n", synopsis, strings.TrimSpace(description))
		printFlags(w, fs)
	}
	return fs
}

// shortAliases maps a one-letter flag to its long name; usage prints them together.
var shortAliases = map[string]string{"v": "verbose"}

func printFlags(w io.Writer, fs *flag.FlagSet) {
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if _, isAlias := shortAliases[f.Name]; isAlias {
			return
		}
		if first {
			fmt.Fprintf(w, "\nFlags:\n")
			first = false
		}
		argName, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		for short, long := range shortAliases {
			if long == f.Name && fs.Lookup(short) != nil {
				line = "  -" + short + ", --" + f.Name
			}
		}
		if argName != "" {
			line += " " + argName
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, usage)
	})
}

// parseArgs parses args, allowing flags before and after positional arguments ("--" ends the flags).
// When ok is false the caller returns code: 0 after --help (usage on stdout), 2 after a bad flag
// (error and usage on stderr).
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (pos []string, code int, ok bool) {
	fs.SetOutput(io.Discard) // we print the error ourselves, with our prefix
	pos, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, exitOK, false
	case err != nil:
		return nil, usageError(fs, stderr, "%v", err), false
	}
	return pos, exitOK, true
}

// parseInterspersed parses flags, takes the next positional argument, and parses again from there.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints "raftkv: <message>" and the command's usage to stderr, and returns exitUsage.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "raftkv: "+format+"\n\n", a...)
	fs.SetOutput(stderr)
	fs.Usage()
	return exitUsage
}

// clientFlags are the flags of every client command.
type clientFlags struct {
	addr    string
	timeout time.Duration
	tls     tlsutil.ClientFiles
	token   string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("RAFTKV_ADDR")
	if def == "" {
		def = defaultAddr
	}
	fs.StringVar(&f.addr, "addr", def,
		"nodes to talk to, as `host:port[,host:port...]`, tried in turn (env RAFTKV_ADDR)")
	fs.DurationVar(&f.timeout, "timeout", defaultTimeout,
		"total `time` to keep retrying transient failures (no leader, node down)")
	fs.StringVar(&f.tls.CA, "cacert", os.Getenv("RAFTKV_CACERT"),
		"CA `file` to verify the nodes' certificates with; addresses without a scheme become https (env RAFTKV_CACERT)")
	fs.StringVar(&f.tls.Cert, "cert", os.Getenv("RAFTKV_CERT"),
		"client certificate `file`, for nodes that require one (--tls-client-ca-file); https (env RAFTKV_CERT)")
	fs.StringVar(&f.tls.Key, "key", os.Getenv("RAFTKV_KEY"), "the client certificate's key `file` (env RAFTKV_KEY)")
	fs.StringVar(&f.token, "token", os.Getenv("RAFTKV_TOKEN"),
		"ACL token `secret` sent with every request (env RAFTKV_TOKEN; prefer the env: flags show in ps)")
}

// tlsConfig is the TLS configuration the flags ask for; nil when none is set (plain HTTP unless an
// address says https://, verified against the system's roots).
func (f *clientFlags) tlsConfig() (*tls.Config, error) {
	if f.tls.Empty() {
		return nil, nil
	}
	return tlsutil.ClientConfig(f.tls)
}

// addrs returns the --addr list; an empty list is a usage error.
func (f *clientFlags) addrs() ([]string, error) {
	addrs := splitAddrs(f.addr)
	if len(addrs) == 0 {
		return nil, errors.New("--addr is empty")
	}
	return addrs, nil
}

// newClient builds a client for the given addresses (nil: all of --addr); errors are usage errors.
func (f *clientFlags) newClient(addrs []string) (*client, error) {
	if f.timeout <= 0 {
		return nil, errors.New("--timeout must be positive")
	}
	if addrs == nil {
		var err error
		if addrs, err = f.addrs(); err != nil {
			return nil, err
		}
	}
	tc, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	return newClient(clientConfig{addrs: addrs, timeout: f.timeout, tls: tc, token: f.token})
}

// fail prints err as "raftkv: <context>: <err>" and returns its exit status.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "raftkv: %v\n", err)
	return exitCode(err)
}

// exitCode is the one place an error becomes an exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errGaveUp) || errors.Is(err, errIndeterminate) {
		return exitUnavailable
	}
	if errors.Is(err, errCompacted) {
		return exitNotFound
	}
	if errors.Is(err, store.ErrInvalidArchive) || errors.Is(err, store.ErrInvalid) {
		return exitUsage
	}
	var ae *apiError
	if errors.As(err, &ae) {
		switch {
		case ae.code == codeKeyNotFound || ae.code == codeUnknownMember || ae.code == codeCASMismatch ||
			ae.code == codeWouldLoseQuorum || ae.code == codeSessionNotFound:
			return exitNotFound
		case ae.status == 400 || ae.status == 413:
			return exitUsage
		case ae.status == 401 || ae.status == 403:
			return exitDenied
		}
	}
	return exitUnavailable
}
