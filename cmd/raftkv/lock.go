package main

// lock.go: the recipes built on sessions: lock (run a command while holding a lock), elect (campaign,
// or observe an election), register (keep an ephemeral key alive in the foreground).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// pollWait bounds one long-poll while waiting for a lock: a lock delay ends without a change to wait for.
const pollWait = 5 * time.Second

// acquireLoop takes key for session id, waiting for it to be free, until ctx ends. It returns the
// fencing token.
func acquireLoop(ctx context.Context, c *client, k *keeper, key, id string, value []byte) (uint64, error) {
	for {
		index, ok, err := c.lockWrite(ctx, "acquire", key, id, value)
		switch {
		case err != nil && isSessionNotFound(err):
			return 0, fmt.Errorf("session %s ended while waiting", id)
		case err != nil && ctx.Err() == nil && errors.Is(err, errGaveUp):
			continue // the cluster was unavailable for a while: keep waiting
		case err != nil:
			return 0, err
		case ok:
			return index, nil
		}
		// Held: wait for a change of the key (its release) or pollWait, then ask again.
		if _, err := c.pollHolder(ctx, key, index, pollWait); err != nil && ctx.Err() == nil && !errors.Is(err, errGaveUp) {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-k.lost:
			return 0, k.why
		default:
		}
	}
}

// watchHeld closes lost when key is no longer held by id (released, taken, deleted) or the session is
// lost, and returns when ctx ends.
func watchHeld(ctx context.Context, c *client, k *keeper, key, id string, lost func(error)) {
	var index uint64
	for ctx.Err() == nil {
		h, err := c.pollHolder(ctx, key, index, pollWait)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			continue // unavailable: the keeper decides when that means the session is gone
		case !h.exists || h.holder != id:
			lost(fmt.Errorf("key %q is no longer held by this session", key))
			return
		}
		index = h.index
	}
}

func runLock(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("lock", "lock [flags] NAME -- COMMAND [ARGS...]", `
Take the lock NAME (a key), run COMMAND while holding it, and release it when COMMAND ends. COMMAND
gets RAFTKV_LOCK_TOKEN in its environment: the lock's fencing token, which only grows for NAME; a
resource it protects should refuse a token lower than the highest it has seen.

The lock lives in a session renewed every --ttl/3. If the lock is lost (the session ended, or no renew
was acknowledged for --ttl, or the key was released or deleted by someone else), COMMAND gets SIGTERM,
then SIGKILL after --grace, and lock exits with status 6. Otherwise lock exits with COMMAND's status.`)
	var cf clientFlags
	cf.register(fs)
	var sf sessionFlags
	var grace, waitFor time.Duration
	fs.DurationVar(&sf.ttl, "ttl", 15*time.Second, "the session's time to live without a renew")
	fs.DurationVar(&sf.lockDelay, "lock-delay", 0, "after the holder's session ends without a release, nobody takes the lock for this long")
	fs.DurationVar(&grace, "grace", 5*time.Second, "after SIGTERM, how long COMMAND has before SIGKILL")
	fs.DurationVar(&waitFor, "wait", 0, "give up (exit status 1) if the lock is not taken within this long (0: wait forever)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) < 2 || pos[0] == "" {
		return usageError(fs, stderr, "lock takes NAME and a COMMAND")
	}
	name, argv := pos[0], pos[1:]
	if argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return usageError(fs, stderr, "lock needs a COMMAND after NAME")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()

	sf.behavior, sf.name = "delete", "lock "+name
	sess, err := c.createSession(ctx, sf)
	if err != nil {
		return fail(stderr, fmt.Errorf("lock %q: create session: %w", name, err))
	}
	k := startKeeper(context.WithoutCancel(ctx), c, sess.ID, sess.ttl(), stderr)
	defer func() {
		k.close()
		// Best effort, on a fresh context: even after an interrupt, give the lock back now rather than
		// leave it to the TTL.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.revokeSession(rctx, sess.ID)
	}()

	actx := ctx
	if waitFor > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, waitFor)
		defer cancel()
	}
	token, err := acquireLoop(actx, c, k, name, sess.ID, []byte(hostPID()))
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(stderr, "raftkv: lock %q: not taken within %s\n", name, waitFor)
			return exitNotFound
		}
		return fail(stderr, fmt.Errorf("lock %q: %w", name, err))
	}

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Env = append(os.Environ(), "RAFTKV_LOCK_TOKEN="+strconv.FormatUint(token, 10),
		"RAFTKV_LOCK_KEY="+name, "RAFTKV_SESSION="+sess.ID)
	if err := cmd.Start(); err != nil {
		return fail(stderr, fmt.Errorf("lock %q: start %s: %w", name, argv[0], err))
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	heldLost := make(chan error, 1)
	go watchHeld(wctx, c, k, name, sess.ID, func(err error) { heldLost <- err })

	var why error
	select {
	case err := <-exited:
		stopWatch()
		// Release before the session goes, so the next holder need not wait out a lock delay.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, _ = c.lockWrite(rctx, "release", name, sess.ID, nil)
		cancel()
		return commandStatus(err)
	case <-k.lost:
		why = k.why
	case why = <-heldLost:
	case <-ctx.Done():
		fmt.Fprintf(stderr, "raftkv: lock %q: interrupted; stopping %s\n", name, argv[0])
		stopCommand(cmd, exited, grace)
		return exitUnavailable
	}
	fmt.Fprintf(stderr, "raftkv: lock %q lost: %v; stopping %s\n", name, why, argv[0])
	stopCommand(cmd, exited, grace)
	return exitLockLost
}

// stopCommand sends SIGTERM, then SIGKILL after grace, and waits for the command to exit.
func stopCommand(cmd *exec.Cmd, exited <-chan error, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// commandStatus is the exit status a finished command reports.
func commandStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		if ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		return exitUnavailable // killed by a signal
	}
	return exitUnavailable
}

func hostPID() string {
	h, _ := os.Hostname()
	return h + ":" + strconv.Itoa(os.Getpid())
}

func runElect(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("elect", "elect [flags] NAME VALUE | elect --observe NAME", `
Campaign for leadership of election NAME with VALUE (e.g. this instance's address): wait until elected,
print "elected <token>", and hold leadership until interrupted (then resign: exit status 0), or until it
is lost (exit status 6). The token is the fencing token of this term of leadership.

With --observe, print the leader's VALUE every time leadership changes, and "(vacant)" when nobody leads,
until interrupted.`)
	var cf clientFlags
	cf.register(fs)
	var sf sessionFlags
	var observe bool
	fs.DurationVar(&sf.ttl, "ttl", 15*time.Second, "the session's time to live without a renew")
	fs.BoolVar(&observe, "observe", false, "print every change of leader instead of campaigning")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if observe && len(pos) != 1 || !observe && len(pos) != 2 {
		return usageError(fs, stderr, "elect takes NAME and VALUE, or --observe NAME")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	name := pos[0]
	if observe {
		return observeElection(ctx, c, name, stdout, stderr)
	}

	sf.behavior, sf.name = "delete", "elect "+name
	sess, err := c.createSession(ctx, sf)
	if err != nil {
		return fail(stderr, fmt.Errorf("elect %q: create session: %w", name, err))
	}
	k := startKeeper(context.WithoutCancel(ctx), c, sess.ID, sess.ttl(), stderr)
	defer func() {
		k.close()
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.revokeSession(rctx, sess.ID) // resign: the key goes with the session
	}()
	token, err := acquireLoop(ctx, c, k, name, sess.ID, []byte(pos[1]))
	if err != nil {
		if ctx.Err() != nil {
			return exitOK
		}
		return fail(stderr, fmt.Errorf("elect %q: %w", name, err))
	}
	fmt.Fprintf(stdout, "elected %d\n", token)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	heldLost := make(chan error, 1)
	go watchHeld(wctx, c, k, name, sess.ID, func(err error) { heldLost <- err })
	select {
	case <-ctx.Done():
		return exitOK
	case <-k.lost:
		fmt.Fprintf(stderr, "raftkv: elect %q: leadership lost: %v\n", name, k.why)
	case err := <-heldLost:
		fmt.Fprintf(stderr, "raftkv: elect %q: leadership lost: %v\n", name, err)
	}
	return exitLockLost
}

// observeElection prints the leader's value on every change, "(vacant)" when there is none.
func observeElection(ctx context.Context, c *client, name string, stdout, stderr io.Writer) int {
	var index uint64
	printed, last := false, ""
	for ctx.Err() == nil {
		wait := pollWait
		if index == 0 {
			wait = 0 // first: read the state now
		}
		h, err := c.pollHolder(ctx, name, index, wait)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(stderr, "raftkv: elect --observe %q: %v (retrying)\n", name, err)
			continue
		}
		line := "(vacant)"
		if h.exists && h.holder != "" {
			line = string(h.value)
		}
		if !printed || line != last {
			fmt.Fprintln(stdout, line)
			printed, last = true, line
		}
		index = max(index, h.index)
	}
	return exitOK
}

func runRegister(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("register", "register [flags] KEY VALUE", `
Keep KEY = VALUE registered while this command runs (service registration): the key is owned by a session
with behavior delete, renewed every --ttl/3, so it disappears within the TTL bound if this process or its
host dies. If the session is lost (the cluster was unreachable for a TTL), a new one re-registers the key.
Interrupt to deregister (the key is deleted at once) and exit 0.`)
	var cf clientFlags
	cf.register(fs)
	var sf sessionFlags
	fs.DurationVar(&sf.ttl, "ttl", 10*time.Second, "the registration's time to live without a renew")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 2 || pos[0] == "" {
		return usageError(fs, stderr, "register takes KEY and VALUE")
	}
	key, value := pos[0], []byte(pos[1])
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	sf.behavior, sf.name = "delete", "register "+key
	for {
		sess, err := c.createSession(ctx, sf)
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			return fail(stderr, fmt.Errorf("register %q: create session: %w", key, err))
		}
		k := startKeeper(context.WithoutCancel(ctx), c, sess.ID, sess.ttl(), stderr)
		index, _, err := c.lockWrite(ctx, "session", key, sess.ID, value)
		if err != nil {
			k.close()
			return fail(stderr, fmt.Errorf("register %q: %w", key, err))
		}
		fmt.Fprintf(stdout, "registered %s at %d (session %s)\n", key, index, sess.ID)
		select {
		case <-ctx.Done():
			k.close()
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.revokeSession(rctx, sess.ID)
			cancel()
			if err != nil {
				return fail(stderr, fmt.Errorf("deregister %q: %w (it goes within the TTL)", key, err))
			}
			return exitOK
		case <-k.lost:
			fmt.Fprintf(stderr, "raftkv: register %q: %v; registering again\n", key, k.why)
			k.close()
		}
	}
}
