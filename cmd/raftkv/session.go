package main

// session.go: the session client commands, the API calls they share with lock, elect and register, and
// the keeper that renews a session in the background.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

const codeSessionNotFound = "session_not_found"

const sessionUsage = `Usage: raftkv session <command> [flags]

Commands:
  create    create a session and print its id
  renew ID  restart session ID's TTL; print the TTL
  revoke ID end session ID now (its keys are deleted or released, as at expiry)
  list      print "id<TAB>name<TAB>ttl<TAB>behavior<TAB>keys" per live session

Run "raftkv session <command> --help" for a command's flags.
`

func runSession(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "raftkv: session needs a command\n\n%s", sessionUsage)
		return exitUsage
	}
	switch args[0] {
	case "create":
		return runSessionCreate(ctx, args[1:], stdout, stderr)
	case "renew", "revoke":
		return runSessionByID(ctx, args[0], args[1:], stdout, stderr)
	case "list":
		return runSessionList(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, sessionUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "raftkv: unknown session command %q\n\n%s", args[0], sessionUsage)
	return exitUsage
}

// sessionFlags are the options of a session a command creates.
type sessionFlags struct {
	ttl, lockDelay time.Duration
	behavior, name string
}

func runSessionCreate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("session create", "session create [flags]", `
Create a session and print its id. Keys written with it (put --session, lock, elect, register) are
deleted (--behavior delete) or released when it ends: revoked, or not renewed within --ttl.`)
	var cf clientFlags
	cf.register(fs)
	var sf sessionFlags
	fs.DurationVar(&sf.ttl, "ttl", 15*time.Second, "time to live without a renew (2s to 24h)")
	fs.StringVar(&sf.behavior, "behavior", "release", "what happens to its keys when it ends: release or delete")
	fs.DurationVar(&sf.lockDelay, "lock-delay", 0, "after it ends, its locks cannot be taken for this long (0 to 1m)")
	fs.StringVar(&sf.name, "name", "", "a name to show in session list")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "session create takes no arguments")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	s, err := c.createSession(ctx, sf)
	if err != nil {
		return fail(stderr, fmt.Errorf("create session: %w", err))
	}
	fmt.Fprintln(stdout, s.ID)
	return exitOK
}

func runSessionByID(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("session "+verb, "session "+verb+" [flags] ID", map[string]string{
		"renew":  "\nRestart session ID's countdown from its full TTL and print the TTL. Exit status 1 once it has ended.",
		"revoke": "\nEnd session ID now: its keys are deleted or released, exactly as at expiry. Exit status 1 if it has ended.",
	}[verb])
	var cf clientFlags
	cf.register(fs)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "session %s takes one session ID", verb)
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	if verb == "renew" {
		ttl, err := c.renewSession(ctx, pos[0])
		if err != nil {
			return fail(stderr, fmt.Errorf("renew session %s: %w", pos[0], err))
		}
		fmt.Fprintln(stdout, ttl)
		return exitOK
	}
	if err := c.revokeSession(ctx, pos[0]); err != nil {
		return fail(stderr, fmt.Errorf("revoke session %s: %w", pos[0], err))
	}
	return exitOK
}

func runSessionList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("session list", "session list [flags]", `
Print one "id<TAB>name<TAB>ttl<TAB>behavior<TAB>keys" line per live session, or with --json the answer of
GET /v1/sessions.`)
	var cf clientFlags
	cf.register(fs)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print the node's JSON answer")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "session list takes no arguments")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	resp, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/sessions"})
	if err != nil {
		return fail(stderr, fmt.Errorf("list sessions: %w", err))
	}
	if asJSON {
		_, _ = stdout.Write(append(resp.body, '\n'))
		return exitOK
	}
	var all []sessionInfo
	if err := decodeBody(resp, &all); err != nil {
		return fail(stderr, fmt.Errorf("list sessions: %w", err))
	}
	for _, s := range all {
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%d\n", s.ID, s.Name, s.TTL, s.Behavior, s.KeyCount)
	}
	return exitOK
}

// sessionInfo is a session as the API describes it.
type sessionInfo struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	TTL      string `json:"ttl"`
	TTLMs    int64  `json:"ttl_ms"`
	Behavior string `json:"behavior"`
	KeyCount int    `json:"key_count"`
}

func (s sessionInfo) ttl() time.Duration { return time.Duration(s.TTLMs) * time.Millisecond }

func (c *client) createSession(ctx context.Context, sf sessionFlags) (sessionInfo, error) {
	body, _ := json.Marshal(map[string]string{"ttl": sf.ttl.String(), "behavior": sf.behavior,
		"lock_delay": sf.lockDelay.String(), "name": sf.name})
	// Not retried once it may have reached a node: a retry could leave a second session behind. Its
	// TTL bounds the cost of that anyway.
	resp, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/session", body: body, ctype: "application/json", write: true})
	if err != nil {
		return sessionInfo{}, err
	}
	var s sessionInfo
	return s, decodeBody(resp, &s)
}

func (c *client) renewSession(ctx context.Context, id string) (time.Duration, error) {
	resp, err := c.do(ctx, call{method: http.MethodPut, path: "/v1/session/" + url.PathEscape(id) + "/renew", write: true})
	if err != nil {
		return 0, err
	}
	var s sessionInfo
	if err := decodeBody(resp, &s); err != nil {
		return 0, err
	}
	return s.ttl(), nil
}

func (c *client) revokeSession(ctx context.Context, id string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: "/v1/session/" + url.PathEscape(id), write: true})
	return err
}

// lockWrite is PUT /v1/kv/KEY?mode=ID: mode is session, acquire or release. ok is acquired/released.
func (c *client) lockWrite(ctx context.Context, mode, key, id string, value []byte) (index uint64, ok bool, err error) {
	resp, err := c.do(ctx, call{method: http.MethodPut, path: kvPath(key), query: url.Values{mode: {id}}, body: value, write: true})
	if err != nil {
		return 0, false, err
	}
	var out struct {
		Index    uint64 `json:"index"`
		Acquired bool   `json:"acquired"`
		Released bool   `json:"released"`
	}
	if err := decodeBody(resp, &out); err != nil {
		return 0, false, err
	}
	return out.Index, out.Acquired || out.Released || mode == "session", nil
}

// holderState is a lock key as a long-poll GET sees it.
type holderState struct {
	exists    bool
	holder    string
	lockIndex uint64
	value     []byte
	index     uint64 // X-Kv-Index: watch from here for the next change
}

// pollHolder reads key, waiting up to wait for a change after index (0: answer now).
func (c *client) pollHolder(ctx context.Context, key string, index uint64, wait time.Duration) (holderState, error) {
	resp, err := c.do(ctx, call{method: http.MethodGet, path: kvPath(key), query: pollQuery(url.Values{}, index, wait)})
	var ae *apiError
	if errors.As(err, &ae) && ae.code == codeKeyNotFound {
		// An error answer's headers are not kept, and the next long-poll needs the index the absence was
		// seen at (or it would return at once, forever): a one-key list of the same key tells it.
		resp, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/kv", query: url.Values{"prefix": {key}, "limit": {"1"}}})
		if err != nil {
			return holderState{}, err
		}
		h := holderState{}
		h.index, _ = strconv.ParseUint(resp.header.Get("X-Kv-Index"), 10, 64)
		return h, nil
	}
	if err != nil {
		return holderState{}, err
	}
	h := holderState{exists: true, holder: resp.header.Get("X-Kv-Session"), value: resp.body}
	h.lockIndex, _ = strconv.ParseUint(resp.header.Get("X-Kv-Lock-Index"), 10, 64)
	h.index, _ = strconv.ParseUint(resp.header.Get("X-Kv-Index"), 10, 64)
	return h, nil
}

func isSessionNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.code == codeSessionNotFound
}

// keeper renews a session every TTL/3 until stopped. It declares the session lost when the cluster
// says it has ended, or when TTL has passed since the client sent its last renew that was
// acknowledged: from then on the session may have expired, and whoever relies on it must stop.
type keeper struct {
	c    *client
	id   string
	ttl  time.Duration
	lost chan struct{} // closed when the session is (or may be) lost
	why  error

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

func startKeeper(ctx context.Context, c *client, id string, ttl time.Duration, stderr io.Writer) *keeper {
	ctx, cancel := context.WithCancel(ctx)
	k := &keeper{c: c, id: id, ttl: ttl, lost: make(chan struct{}), stop: cancel, done: make(chan struct{})}
	go k.run(ctx, stderr)
	return k
}

func (k *keeper) run(ctx context.Context, stderr io.Writer) {
	defer close(k.done)
	acked := time.Now() // the create's send time is before now: conservative
	for {
		wait := k.ttl / 3
		if left := time.Until(acked.Add(k.ttl)); left <= 0 {
			k.markLost(fmt.Errorf("no renew acknowledged for %s (the TTL): the session may have expired", k.ttl))
			return
		} else if left < wait {
			wait = left
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, acked.Add(k.ttl))
		_, err := k.c.renewSession(rctx, k.id)
		cancel()
		switch {
		case err == nil:
			acked = sent
		case isSessionNotFound(err):
			k.markLost(fmt.Errorf("session %s has ended", k.id))
			return
		case ctx.Err() != nil:
			return
		default:
			fmt.Fprintf(stderr, "raftkv: renew session %s: %v (retrying)\n", k.id, err)
		}
	}
}

func (k *keeper) markLost(err error) {
	k.once.Do(func() {
		k.why = err
		close(k.lost)
	})
}

// close stops renewing and waits for the renewing goroutine.
func (k *keeper) close() {
	k.stop()
	<-k.done
}
