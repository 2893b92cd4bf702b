package main

// sessions.go: the session rows, run against raftkv and etcd after the other scenarios, on the same
// running cluster.
//
//   - locks: a closed loop of acquire + release round trips, c=16 workers on one lock, then c=128 on 128
//     locks (each round trip picks one at random). raftkv through its Go client (client.Mutex, one
//     session per worker), etcd through concurrency.Mutex (one concurrency.Session per worker): each
//     system's own lock recipe, waiting included.
//   - keepalives: put c=64 alone, then N sessions (default 10,000) created evenly over TTL/3 and renewed
//     every TTL/3 by their client (raftkv client.Session; etcd Grant + clientv3 KeepAlive), the server
//     CPU the keepalives alone cost over whole renew periods, then put c=64 again beside them: the put
//     throughput lost to keepalives. Every session must still be alive a TTL after the last was made.
//
// raftkv's sessions are spread over the three nodes (one client each), etcd's leases over its three
// members (one clientv3 client each), as a fleet of services would be.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/bench/etcd/etcdtarget"
	"github.com/raftkv/raftkv/bench/loadgen"
	"github.com/raftkv/raftkv/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// sessionBench is what the session rows need of a system.
type sessionBench interface {
	// locker returns worker w's lock round trip on key: it takes the lock (waiting as the system's
	// recipe waits) and gives it back.
	locker(ctx context.Context, w int) (func(ctx context.Context, key string) error, error)
	// keepAlive creates n sessions with ttl, each renewed every ttl/3 by the client until ctx ends.
	keepAlive(ctx context.Context, n int, ttl time.Duration) error
	// renews is how many renews the system has acknowledged so far.
	renews(ctx context.Context) (int64, error)
	// live is how many of the keepalive sessions the cluster counts as alive.
	live(ctx context.Context) (int, error)
	close()
}

// runSessionScenarios runs the lock rows, then the keepalive row.
func runSessionScenarios(ctx context.Context, sys system, f compareFlags, rep *report) {
	var sb sessionBench
	switch c := sys.(type) {
	case *raftkvCluster:
		rb, err := newRaftkvSessionBench(c.http)
		if err != nil {
			rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s sessions: %v", sys.name(), err))
			return
		}
		sb = rb
	case *etcdCluster:
		cl, err := etcdtarget.Dial(c.clients)
		if err != nil {
			rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s sessions: %v", sys.name(), err))
			return
		}
		sb = &etcdSessionBench{cl: cl}
	default:
		return
	}
	defer sb.close()
	for _, l := range []struct{ c, locks int }{{16, 1}, {128, 128}} {
		if ctx.Err() != nil {
			return
		}
		if err := runLocks(ctx, sys, sb, f, l.c, l.locks, rep); err != nil {
			fmt.Printf("   locks c=%d on %d: failed: %v\n", l.c, l.locks, err)
			rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s locks c=%d on %d: %v", sys.name(), l.c, l.locks, err))
		}
	}
	if ctx.Err() != nil {
		return
	}
	if err := runKeepalives(ctx, sys, sb, f, rep); err != nil {
		fmt.Printf("   keepalives: failed: %v\n", err)
		rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s keepalives: %v", sys.name(), err))
	}
}

// runLocks: c workers in a closed loop of lock round trips over `locks` keys.
func runLocks(ctx context.Context, sys system, sb sessionBench, f compareFlags, c, locks int, rep *report) error {
	name := fmt.Sprintf("lock acquire + release, c=%d on %d lock(s)", c, locks)
	prefix := fmt.Sprintf("lock%d/", locks)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hists := make([]*loadgen.Histogram, c)
	var measuring atomic.Bool
	var errs atomic.Int64
	errc := make(chan error, c)
	var wg sync.WaitGroup
	for w := range c {
		hists[w] = loadgen.NewHistogram()
		lock, err := sb.locker(lctx, w)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("worker %d: %w", w, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for lctx.Err() == nil {
				key := prefix + strconv.Itoa(rng.IntN(locks))
				start := time.Now()
				octx, ocancel := context.WithTimeout(lctx, 30*time.Second)
				err := lock(octx, key)
				ocancel()
				if lctx.Err() != nil {
					return
				}
				if err != nil {
					if errs.Add(1) == 1 {
						errc <- err
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if measuring.Load() {
					hists[w].Record(time.Since(start))
				}
			}
		}()
	}
	time.Sleep(f.warmup)
	errs.Store(0)
	cpu0, began := serverCPU(sys), time.Now()
	measuring.Store(true)
	time.Sleep(f.duration)
	measuring.Store(false)
	elapsed, cpu := time.Since(began), serverCPU(sys)-cpu0
	cancel()
	wg.Wait()
	all := loadgen.NewHistogram()
	for _, h := range hists {
		all.Merge(h)
	}
	s := sys.name()
	n := all.Count()
	rep.addMeasure(name, "round trips/s", "ops/s", false, s, round(float64(n)/elapsed.Seconds(), 0))
	rep.addMeasure(name, "round trip p50 (lock → unlocked)", "ms", true, s, ms(all.Quantile(0.5)))
	rep.addMeasure(name, "round trip p99", "ms", true, s, ms(all.Quantile(0.99)))
	if n > 0 {
		rep.addMeasure(name, "server CPU per round trip", "µs", true, s, round(float64(cpu.Microseconds())/float64(n), 1))
	}
	rep.addMeasure(name, "errors", "", true, s, float64(errs.Load()))
	fmt.Printf("   %-36s %6.0f round trips/s  p50 %-7s p99 %-7s CPU/op %.0fµs errors %d\n", name, float64(n)/elapsed.Seconds(),
		loadgen.FormatDuration(all.Quantile(0.5)), loadgen.FormatDuration(all.Quantile(0.99)),
		float64(cpu.Microseconds())/float64(max(n, 1)), errs.Load())
	select {
	case err := <-errc:
		fmt.Printf("   %-36s first error: %v\n", name, err)
	default:
	}
	return nil
}

// runKeepalives: put c=64 alone, then beside n sessions kept alive at TTL/3.
func runKeepalives(ctx context.Context, sys system, sb sessionBench, f compareFlags, rep *report) error {
	n, ttl := f.scenario.sessions, f.scenario.sessionTTL
	name := fmt.Sprintf("%d sessions renewed at TTL/3 (TTL %s) + put c=64", n, ttl)
	putW := workload{label: "put", op: loadgen.OpPut, concurrency: 64}
	placement := loadgen.Placement(f.placement)
	alone, err := runRow(ctx, sys, putW, f, placement)
	if err != nil {
		return fmt.Errorf("put alone: %w", err)
	}

	// The sessions are created evenly over one renew period (TTL/3), so their renews are spread evenly
	// too, as a fleet's would be, rather than arriving in the burst a create loop would make.
	kctx, stopSessions := context.WithCancel(ctx)
	defer stopSessions()
	period := ttl / 3
	began := time.Now()
	if err := sb.keepAlive(kctx, n, ttl); err != nil {
		return fmt.Errorf("creating the sessions: %w", err)
	}
	// One more period: every session has renewed once, at a steady rate.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(began.Add(2 * period))):
	}
	// The keepalive window is whole renew periods, so it holds every session's renews alike.
	window := period * time.Duration(max(1, (f.duration+period-1)/period))
	r0, err := sb.renews(ctx)
	if err != nil {
		return err
	}
	cpu0, self0, t0 := serverCPU(sys), selfCPU(), time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	kaElapsed, kaCPU, kaClient := time.Since(t0), serverCPU(sys)-cpu0, selfCPU()-self0
	r1, err := sb.renews(ctx)
	if err != nil {
		return err
	}
	beside, err := runRow(ctx, sys, putW, f, placement)
	if err != nil {
		return fmt.Errorf("put beside the keepalives: %w", err)
	}
	// Every session alive a full TTL after the last was created: renews really kept them.
	if d := time.Until(began.Add(period + ttl + time.Second)); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	liveN, err := sb.live(ctx)
	if err != nil {
		return fmt.Errorf("counting live sessions: %w", err)
	}
	stopSessions()

	s := sys.name()
	renewsPerSec := float64(r1-r0) / kaElapsed.Seconds()
	rep.addMeasure(name, "put c=64 ops/s alone", "ops/s", false, s, round(alone.res.Throughput, 0))
	rep.addMeasure(name, "put c=64 ops/s beside the keepalives", "ops/s", false, s, round(beside.res.Throughput, 0))
	loss := 100 * (1 - beside.res.Throughput/max(alone.res.Throughput, 1))
	rep.addMeasure(name, "put throughput lost", "%", true, s, round(loss, 1))
	rep.addMeasure(name, "put p99 beside the keepalives", "ms", true, s, ms(beside.res.Latency.P99))
	rep.addMeasure(name, "server CPU for keepalives alone", "cores", true, s, round(kaCPU.Seconds()/kaElapsed.Seconds(), 3))
	rep.addMeasure(name, fmt.Sprintf("renews acknowledged/s (n×3/TTL = %.0f)", float64(n)*3/ttl.Seconds()), "ops/s", false, s, round(renewsPerSec, 0))
	rep.addMeasure(name, "server CPU per renew", "µs", true, s, round(kaCPU.Seconds()/max(float64(r1-r0), 1)*1e6, 1))
	rep.addMeasure(name, "client CPU for keepalives alone", "cores", true, s, round(kaClient.Seconds()/kaElapsed.Seconds(), 3))
	rep.addMeasure(name, "sessions alive a TTL after the last was created", "", false, s, float64(liveN))
	fmt.Printf("   %-36s put %.0f → %.0f ops/s (%.1f%% lost), %.0f renews/s, keepalive CPU %.3f cores (%.1fµs/renew), client %.3f cores, %d of %d alive after a TTL\n",
		name, alone.res.Throughput, beside.res.Throughput, loss, renewsPerSec, kaCPU.Seconds()/kaElapsed.Seconds(),
		kaCPU.Seconds()/max(float64(r1-r0), 1)*1e6, kaClient.Seconds()/kaElapsed.Seconds(), liveN, n)
	return nil
}

// parallelFor runs do(i) for i in [0, n) on 64 workers, the i-th not before i×spread/n from now; the
// first error stops it.
func parallelFor(ctx context.Context, n int, spread time.Duration, do func(ctx context.Context, i int) error) error {
	began := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if d := time.Until(began.Add(spread * time.Duration(i) / time.Duration(n))); d > 0 {
					time.Sleep(d)
				}
				if err := do(ctx, i); err != nil {
					once.Do(func() { first = fmt.Errorf("session %d: %w", i, err); cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// ---- raftkv through its Go client ----

type raftkvSessionBench struct {
	addrs   []string
	clients []*client.Client // one per node
	hcs     []*http.Client
}

func newRaftkvSessionBench(addrs []string) (*raftkvSessionBench, error) {
	b := &raftkvSessionBench{addrs: addrs}
	for _, a := range addrs {
		hc := newHTTPClient(256)
		hc.Timeout = 0 // the client bounds each call itself; its watches are long
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		c, err := client.New(client.Config{Endpoints: []string{a}, HTTPClient: hc})
		if err != nil {
			b.close()
			return nil, err
		}
		b.clients, b.hcs = append(b.clients, c), append(b.hcs, hc)
	}
	return b, nil
}

func (b *raftkvSessionBench) close() {
	for _, hc := range b.hcs {
		hc.CloseIdleConnections()
	}
}

func (b *raftkvSessionBench) locker(ctx context.Context, w int) (func(context.Context, string) error, error) {
	s, err := b.clients[w%len(b.clients)].NewSession(ctx, client.SessionOptions{TTL: 15 * time.Second, Name: "bench-lock"})
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); _ = s.Close(context.Background()) }()
	value := []byte("holder")
	return func(ctx context.Context, key string) error {
		m := client.NewMutex(s, key)
		if _, err := m.Lock(ctx, value); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		released, err := m.Unlock(ctx, value)
		if err == nil && !released {
			err = errors.New("unlock: the lock was not held")
		}
		return err
	}, nil
}

func (b *raftkvSessionBench) keepAlive(ctx context.Context, n int, ttl time.Duration) error {
	sessions := make([]*client.Session, n)
	err := parallelFor(ctx, n, ttl/3, func(cctx context.Context, i int) error {
		s, err := b.clients[i%len(b.clients)].NewSession(cctx, client.SessionOptions{TTL: ttl, Name: "bench-keepalive"})
		sessions[i] = s
		return err
	})
	// The sessions stop renewing when ctx ends (they are then left to expire: the cluster stops next).
	go func() {
		<-ctx.Done()
		for _, s := range sessions {
			if s != nil {
				s.Abandon()
			}
		}
	}()
	return err
}

// renews sums the nodes' count of answered PUT /v1/session/{id}/renew with 200.
func (b *raftkvSessionBench) renews(ctx context.Context) (int64, error) {
	var total int64
	for _, a := range b.addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/metrics", nil)
		if err != nil {
			return 0, err
		}
		resp, err := b.hcs[0].Do(req)
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, `raftkv_http_requests_total{code="200",method="PUT",route="/v1/session/{id}"} `) {
				v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				if err != nil {
					return 0, fmt.Errorf("metrics of %s: %q: %w", a, line, err)
				}
				total += int64(v)
			}
		}
	}
	return total, nil
}

func (b *raftkvSessionBench) live(ctx context.Context) (int, error) {
	var all []struct {
		Name string `json:"name"`
	}
	if err := httpOK(ctx, b.hcs[0], "http://"+b.addrs[0]+"/v1/sessions", &all); err != nil {
		return 0, err
	}
	n := 0
	for _, s := range all {
		if s.Name == "bench-keepalive" {
			n++
		}
	}
	return n, nil
}

// ---- etcd through clientv3 ----

type etcdSessionBench struct {
	cl       *etcdtarget.Clients
	acks     atomic.Int64 // keepalive responses received
	mu       sync.Mutex
	leaseIDs []clientv3.LeaseID
}

func (b *etcdSessionBench) close() { b.cl.Close() }

func (b *etcdSessionBench) locker(ctx context.Context, w int) (func(context.Context, string) error, error) {
	s, err := concurrency.NewSession(b.cl.Member(w), concurrency.WithTTL(15), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); _ = s.Close() }()
	return func(ctx context.Context, key string) error {
		m := concurrency.NewMutex(s, key)
		if err := m.Lock(ctx); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if err := m.Unlock(ctx); err != nil {
			return fmt.Errorf("unlock: %w", err)
		}
		return nil
	}, nil
}

func (b *etcdSessionBench) keepAlive(ctx context.Context, n int, ttl time.Duration) error {
	return parallelFor(ctx, n, ttl/3, func(cctx context.Context, i int) error {
		cli := b.cl.Member(i)
		g, err := cli.Grant(cctx, int64(ttl/time.Second))
		if err != nil {
			return err
		}
		ch, err := cli.KeepAlive(ctx, g.ID)
		if err != nil {
			return err
		}
		b.mu.Lock()
		b.leaseIDs = append(b.leaseIDs, g.ID)
		b.mu.Unlock()
		go func() { // drain the responses; the channel closes when the lease is lost or ctx ends
			for range ch {
				b.acks.Add(1)
			}
		}()
		return nil
	})
}

func (b *etcdSessionBench) renews(context.Context) (int64, error) { return b.acks.Load(), nil }

// live asks the leases' remaining TTL (TimeToLive: -1 once the lease is gone).
func (b *etcdSessionBench) live(ctx context.Context) (int, error) {
	b.mu.Lock()
	ids := append([]clientv3.LeaseID(nil), b.leaseIDs...)
	b.mu.Unlock()
	var alive atomic.Int64
	err := parallelFor(ctx, len(ids), 0, func(ctx context.Context, i int) error {
		r, err := b.cl.Member(i).TimeToLive(ctx, ids[i])
		if err != nil {
			return err
		}
		if r.TTL > 0 {
			alive.Add(1)
		}
		return nil
	})
	return int(alive.Load()), err
}
