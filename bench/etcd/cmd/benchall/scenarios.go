package main

// scenarios.go: the rows that are not one closed loop of puts or gets, run against raftkv and etcd
// (the ceiling has neither Raft nor watches) after the plain rows, on the same running cluster.
//
//   - large values: 64 writers of 64 KiB, then of 1 MiB values, while 8 small clients do 100 B
//     linearizable reads and writes on the followers. They run alone first (the baseline), then beside
//     the writers: what the large writes do to small requests is the ratio between the two.
//   - memory per stored byte: 1 MiB values into distinct keys, then each node's resident memory over
//     the bytes stored.
//   - watch fan-out: N watchers on one prefix spread over the nodes while puts land at a fixed rate;
//     delivery latency (put acknowledged → event received) and server CPU per delivered event. The
//     same at issue 12's scale, and the memory of idle watches, are in watchscale.go.
//
// raftkv is driven through net/http (the ordinary client); etcd through clientv3.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/bench/etcd/etcdtarget"
	"github.com/raftkv/raftkv/bench/loadgen"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// scenarioClient is what the scenarios need of a system, node by node.
type scenarioClient interface {
	put(ctx context.Context, node int, key string, value []byte) error
	get(ctx context.Context, node int, key string) error // linearizable
	// watch follows every change under prefix from now, calling ready once the watch is established
	// and onKey for each changed key, until ctx ends or the stream fails.
	watch(ctx context.Context, node int, prefix string, ready func(), onKey func(key []byte)) error
	leader(ctx context.Context) (int, error)
	close()
}

type scenarioFlags struct {
	largeWriters, smallClients int
	fillKeys                   int
	watchers, watchRate        int
	sessions                   int           // keepalives: sessions kept alive beside put c=64
	sessionTTL                 time.Duration // keepalives: their TTL (renewed every TTL/3)
	// the watch rows at issue 12's scale (watchscale.go)
	scaleWatchers, scaleWatchRate, scaleWatchEvery int
	idleWatches                                    int
}

// fanout is one watch fan-out row: watchers on one prefix, puts at watchRate per second, every
// every-th of them under the watched prefix (1: all) and the others beside it.
type fanout struct {
	watchers, watchRate, every int
}

// measure is one number of a scenario for one system.
type measure struct {
	Scenario    string             `json:"scenario"`
	Name        string             `json:"measure"`
	Unit        string             `json:"unit"`
	LowerBetter bool               `json:"lower_is_better"`
	Values      map[string]float64 `json:"values"` // system → value (the median over rounds)
	rounds      map[string][]float64
}

func (r *report) addMeasure(scenario, name, unit string, lowerBetter bool, system string, v float64) {
	for _, m := range r.Scenarios {
		if m.Scenario == scenario && m.Name == name {
			m.rounds[system] = append(m.rounds[system], v)
			return
		}
	}
	r.Scenarios = append(r.Scenarios, &measure{Scenario: scenario, Name: name, Unit: unit, LowerBetter: lowerBetter,
		rounds: map[string][]float64{system: {v}}})
}

// runScenarios runs every scenario against sys; a scenario that fails is reported and the next runs.
func runScenarios(ctx context.Context, sys system, f compareFlags, rep *report) {
	var sc scenarioClient
	switch c := sys.(type) {
	case *raftkvCluster:
		sc = newRaftkvScenarioClient(c.http, f.scenario.largeWriters+f.scenario.smallClients+f.scenario.watchers+16)
	case *etcdCluster:
		cl, err := etcdtarget.Dial(c.clients)
		if err != nil {
			rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s scenarios: %v", sys.name(), err))
			return
		}
		sc = &etcdScenarioClient{cl: cl, endpoints: c.clients}
	default:
		return
	}
	defer sc.close()
	var stored sync.Map // key → size of its last value, for memory per stored byte
	for _, size := range []int{64 << 10, 1 << 20} {
		if ctx.Err() != nil || f.scenario.largeWriters == 0 {
			break
		}
		if err := runLarge(ctx, sys, sc, f, size, &stored, rep); err != nil {
			fmt.Printf("   large values %s: failed: %v\n", sizeLabel(size), err)
			rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s large values %s: %v", sys.name(), sizeLabel(size), err))
		}
	}
	if ctx.Err() != nil {
		return
	}
	if f.scenario.largeWriters == 0 {
		// skipped (with the large-value rows, or on its own)
	} else if err := runMemoryFill(ctx, sys, sc, f, &stored, rep); err != nil {
		fmt.Printf("   memory per stored byte: failed: %v\n", err)
		rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s memory per stored byte: %v", sys.name(), err))
	}
	if ctx.Err() != nil {
		return
	}
	if f.scenario.watchers == 0 {
		// skipped
	} else if err := runWatchFanout(ctx, sys, sc, f, fanout{f.scenario.watchers, f.scenario.watchRate, 1}, rep); err != nil {
		fmt.Printf("   watch fan-out: failed: %v\n", err)
		rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s watch fan-out: %v", sys.name(), err))
	}
	runSessionScenarios(ctx, sys, f, rep) // sessions.go
	runWatchScale(ctx, sys, sc, f, rep)   // watchscale.go
}

func sizeLabel(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + " MiB"
	}
	return strconv.Itoa(n>>10) + " KiB"
}

// serverCPU is the CPU time the system's processes have used so far.
func serverCPU(sys system) time.Duration {
	var total time.Duration
	for _, p := range sys.processes() {
		c, _ := procCPU(p.pid())
		total += c
	}
	return total
}

// runLarge: the small clients alone, then beside the large writers.
func runLarge(ctx context.Context, sys system, sc scenarioClient, f compareFlags, size int, stored *sync.Map, rep *report) error {
	name := "large values " + sizeLabel(size) + " + 100 B reads"
	const smallKeys = 100
	small := bytes.Repeat([]byte("s"), 100)
	for i := range smallKeys {
		if err := sc.put(ctx, i%nodes, "small/"+strconv.Itoa(i), small); err != nil {
			return fmt.Errorf("writing the small keys: %w", err)
		}
	}
	lead, err := sc.leader(ctx)
	if err != nil {
		return err
	}
	var followers []int
	for i := range nodes {
		if i != lead {
			followers = append(followers, i)
		}
	}
	sf := f.scenario
	// The small clients: even ones read, odd ones write 100 B values, each pinned to a follower.
	type smallHists struct{ get, put *loadgen.Histogram }
	smallClients := func(ctx context.Context, errs *atomic.Int64) (*sync.WaitGroup, []smallHists) {
		var wg sync.WaitGroup
		hists := make([]smallHists, sf.smallClients)
		for r := range sf.smallClients {
			hists[r] = smallHists{loadgen.NewHistogram(), loadgen.NewHistogram()}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := r; ctx.Err() == nil; n++ {
					node, key := followers[r%len(followers)], "small/"+strconv.Itoa(n%smallKeys)
					start := time.Now()
					var err error
					h := hists[r].get
					if r%2 == 1 {
						err, h = sc.put(ctx, node, key, small), hists[r].put
					} else {
						err = sc.get(ctx, node, key)
					}
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						errs.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					h.Record(time.Since(start))
				}
			}()
		}
		return &wg, hists
	}
	merge := func(hs []smallHists, put bool) *loadgen.Histogram {
		m := loadgen.NewHistogram()
		for _, h := range hs {
			if put {
				m.Merge(h.put)
			} else {
				m.Merge(h.get)
			}
		}
		return m
	}

	// Baseline: the small clients alone.
	var baseErrs atomic.Int64
	bctx, cancel := context.WithTimeout(ctx, f.duration/2)
	bwg, baseHists := smallClients(bctx, &baseErrs)
	bwg.Wait()
	cancel()
	baseGet, basePut := merge(baseHists, false), merge(baseHists, true)

	// Under load: the small clients beside the large writers.
	value := bytes.Repeat([]byte("L"), size)
	const largeKeys = 256
	var loadErrs, putErrs, putBytes atomic.Int64
	putHists := make([]*loadgen.Histogram, sf.largeWriters)
	lctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	cpu0, began := serverCPU(sys), time.Now()
	rwg, loadHists := smallClients(lctx, &loadErrs)
	var wwg sync.WaitGroup
	prefix := fmt.Sprintf("large%d/", size)
	for w := range sf.largeWriters {
		putHists[w] = loadgen.NewHistogram()
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for n := w; lctx.Err() == nil; n += sf.largeWriters {
				key := prefix + strconv.Itoa(n%largeKeys)
				start := time.Now()
				err := sc.put(lctx, n%nodes, key, value)
				if lctx.Err() != nil {
					return
				}
				if err != nil {
					putErrs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				putHists[w].Record(time.Since(start))
				putBytes.Add(int64(size))
				stored.Store(key, size)
			}
		}()
	}
	rwg.Wait()
	wwg.Wait()
	elapsed, cpu := time.Since(began), serverCPU(sys)-cpu0
	loadGet, loadPut := merge(loadHists, false), merge(loadHists, true)
	puts := loadgen.NewHistogram()
	for _, h := range putHists {
		puts.Merge(h)
	}

	s := sys.name()
	mib := float64(1 << 20)
	rep.addMeasure(name, "100 B get p50, small clients alone", "ms", true, s, ms(baseGet.Quantile(0.5)))
	rep.addMeasure(name, "100 B get p99, small clients alone", "ms", true, s, ms(baseGet.Quantile(0.99)))
	rep.addMeasure(name, "100 B get p50, beside the writers", "ms", true, s, ms(loadGet.Quantile(0.5)))
	rep.addMeasure(name, "100 B get p99, beside the writers", "ms", true, s, ms(loadGet.Quantile(0.99)))
	rep.addMeasure(name, "100 B put p50, small clients alone", "ms", true, s, ms(basePut.Quantile(0.5)))
	rep.addMeasure(name, "100 B put p99, small clients alone", "ms", true, s, ms(basePut.Quantile(0.99)))
	rep.addMeasure(name, "100 B put p50, beside the writers", "ms", true, s, ms(loadPut.Quantile(0.5)))
	rep.addMeasure(name, "100 B put p99, beside the writers", "ms", true, s, ms(loadPut.Quantile(0.99)))
	rep.addMeasure(name, "100 B ops/s beside the writers", "ops/s", false, s, float64(loadGet.Count()+loadPut.Count())/elapsed.Seconds())
	rep.addMeasure(name, fmt.Sprintf("large puts (c=%d) MiB/s", sf.largeWriters), "MiB/s", false, s, float64(putBytes.Load())/mib/elapsed.Seconds())
	if puts.Count() > 0 { // a latency of no puts would read as 0 ms
		rep.addMeasure(name, "large put p50", "ms", true, s, ms(puts.Quantile(0.5)))
		rep.addMeasure(name, "large put p99", "ms", true, s, ms(puts.Quantile(0.99)))
	}
	if pb := putBytes.Load(); pb > 0 {
		rep.addMeasure(name, "server CPU per MiB written", "ms", true, s, ms(cpu)/(float64(pb)/mib))
	}
	rep.addMeasure(name, "errors (gets + puts)", "", true, s, float64(baseErrs.Load()+loadErrs.Load()+putErrs.Load()))
	d := loadgen.FormatDuration
	fmt.Printf("   %-36s small get p50 %s→%s p99 %s→%s, small put p50 %s→%s p99 %s→%s, large %.1f MiB/s p50 %s, errors %d\n",
		name, d(baseGet.Quantile(0.5)), d(loadGet.Quantile(0.5)), d(baseGet.Quantile(0.99)), d(loadGet.Quantile(0.99)),
		d(basePut.Quantile(0.5)), d(loadPut.Quantile(0.5)), d(basePut.Quantile(0.99)), d(loadPut.Quantile(0.99)),
		float64(putBytes.Load())/mib/elapsed.Seconds(), loadgen.FormatDuration(puts.Quantile(0.5)),
		baseErrs.Load()+loadErrs.Load()+putErrs.Load())
	return nil
}

// runMemoryFill writes --fill-keys distinct 1 MiB values (8 writers), then reads every node's
// resident memory: memory per stored byte. The large-value rows wrote before it; their keys count too
// (each holds its last value).
func runMemoryFill(ctx context.Context, sys system, sc scenarioClient, f compareFlags, stored *sync.Map, rep *report) error {
	const size = 1 << 20
	fillKeys := f.scenario.fillKeys
	name := fmt.Sprintf("memory: %d × 1 MiB distinct keys", fillKeys)
	value := bytes.Repeat([]byte("M"), size)
	var next atomic.Int64
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= fillKeys || ctx.Err() != nil {
					return
				}
				var err error
				for try := 0; try < 3; try++ {
					if err = sc.put(ctx, i%nodes, "fill/"+strconv.Itoa(i), value); err == nil {
						stored.Store("fill/"+strconv.Itoa(i), size)
						break
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	total := 0.0 // with what the large-value rows left
	stored.Range(func(_, v any) bool { total += float64(v.(int)); return true })
	var maxRSS, maxAnon uint64
	for _, p := range sys.processes() {
		if m, err := procMemory(p.pid()); err == nil {
			maxRSS, maxAnon = max(maxRSS, m.RSS), max(maxAnon, m.Anon)
		}
	}
	mib := float64(1 << 20)
	s := sys.name()
	rep.addMeasure(name, "largest node RSS", "MiB", true, s, round(float64(maxRSS)/mib, 0))
	rep.addMeasure(name, "largest node anonymous RSS (heap)", "MiB", true, s, round(float64(maxAnon)/mib, 0))
	rep.addMeasure(name, "values stored (with the large-value rows')", "MiB", false, s, round(total/mib, 0))
	rep.addMeasure(name, "largest RSS / bytes stored", "×", true, s, round(float64(maxRSS)/total, 2))
	fmt.Printf("   %-36s RSS %.0f MiB (anon %.0f MiB) for %.0f MiB stored\n", name, float64(maxRSS)/mib, float64(maxAnon)/mib, total/mib)
	return nil
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 2) }

// runWatchFanout: watchers on one prefix, puts at a fixed rate, every event's delivery latency.
func runWatchFanout(ctx context.Context, sys system, sc scenarioClient, f compareFlags, sf fanout, rep *report) error {
	name := fmt.Sprintf("watch fan-out: %d watchers, %d puts/s", sf.watchers, sf.watchRate)
	if sf.every > 1 {
		name += fmt.Sprintf(" (1 in %d under the prefix)", sf.every)
	}
	const prefix = "watch/"
	wctx, cancelWatches := context.WithCancel(ctx)
	defer cancelWatches()
	total := int(float64(sf.watchRate)*f.duration.Seconds()) + 1
	acked := make([]atomic.Int64, total) // unix nanos of each put's acknowledgement
	type recv struct {
		seq int
		at  int64
	}
	received := make([][]recv, sf.watchers)
	var delivered, ready atomic.Int64
	var wg sync.WaitGroup
	watchErrs := make(chan error, sf.watchers)
	for w := range sf.watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sc.watch(wctx, w%nodes, prefix, func() { ready.Add(1) }, func(key []byte) {
				seq, err := strconv.Atoi(string(key[len(prefix):]))
				if err != nil || seq >= total {
					return
				}
				received[w] = append(received[w], recv{seq, time.Now().UnixNano()})
				delivered.Add(1)
			})
			if err != nil && wctx.Err() == nil {
				watchErrs <- err
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for ready.Load() < int64(sf.watchers) {
		select {
		case err := <-watchErrs:
			return fmt.Errorf("a watch failed while starting: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d watches established in 60s", ready.Load(), sf.watchers)
		}
	}

	// Open loop: put i is due at i/rate; a few writers so one slow put does not hold back the rate.
	cpu0, began := serverCPU(sys), time.Now()
	var next, putErrs, acks, watchedAcks atomic.Int64
	var pwg sync.WaitGroup
	value := bytes.Repeat([]byte("w"), 100)
	for range max(16, sf.watchRate/50) { // enough writers that a put's latency does not hold back the rate
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				if d := time.Until(began.Add(time.Duration(i) * time.Second / time.Duration(sf.watchRate))); d > 0 {
					time.Sleep(d)
				}
				key := prefix + strconv.Itoa(i)
				watched := i%sf.every == 0
				if !watched {
					key = "unwatched/" + strconv.Itoa(i) // lands beside the prefix: no watcher may hear of it
				}
				if err := sc.put(ctx, i%nodes, key, value); err != nil {
					putErrs.Add(1)
					continue
				}
				acks.Add(1)
				if watched {
					acked[i].Store(time.Now().UnixNano())
					watchedAcks.Add(1)
				}
			}
		}()
	}
	pwg.Wait()
	putTime := time.Since(began)
	// Let the last events arrive: until every watcher has every acknowledged put, or 5 s.
	for end := time.Now().Add(5 * time.Second); delivered.Load() < watchedAcks.Load()*int64(sf.watchers) && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed, cpu := time.Since(began), serverCPU(sys)-cpu0
	cancelWatches()
	wg.Wait()

	lat := loadgen.NewHistogram()
	for _, rs := range received {
		for _, r := range rs {
			if a := acked[r.seq].Load(); a > 0 {
				lat.Record(time.Duration(max(r.at-a, 0)))
			}
		}
	}
	s := sys.name()
	want := watchedAcks.Load() * int64(sf.watchers)
	rep.addMeasure(name, "puts/s achieved", "ops/s", false, s, float64(acks.Load())/putTime.Seconds())
	rep.addMeasure(name, "events delivered / expected", "%", false, s, 100*float64(delivered.Load())/float64(max(want, 1)))
	rep.addMeasure(name, "delivery latency p50 (put ack → event)", "ms", true, s, ms(lat.Quantile(0.5)))
	rep.addMeasure(name, "delivery latency p99", "ms", true, s, ms(lat.Quantile(0.99)))
	if d := delivered.Load(); d > 0 {
		rep.addMeasure(name, "server CPU per delivered event", "µs", true, s, round(float64(cpu.Microseconds())/float64(d), 2))
	}
	rep.addMeasure(name, "server CPU (cores)", "cores", true, s, round(cpu.Seconds()/elapsed.Seconds(), 2))
	fmt.Printf("   %-36s %d puts (%d errors), %d of %d events, latency p50 %s p99 %s, CPU/event %.1fµs\n", name,
		acks.Load(), putErrs.Load(), delivered.Load(), want, loadgen.FormatDuration(lat.Quantile(0.5)),
		loadgen.FormatDuration(lat.Quantile(0.99)), float64(cpu.Microseconds())/float64(max(delivered.Load(), 1)))
	return nil
}

// ---- raftkv over net/http ----

type raftkvScenarioClient struct {
	hc     *http.Client
	stream *http.Client // watches: no overall timeout
	addrs  []string
}

func newRaftkvScenarioClient(addrs []string, conns int) *raftkvScenarioClient {
	hc := newHTTPClient(conns)
	st := newHTTPClient(conns)
	st.Timeout = 0
	return &raftkvScenarioClient{hc: hc, stream: st, addrs: addrs}
}

func (c *raftkvScenarioClient) close() {
	c.hc.CloseIdleConnections()
	c.stream.CloseIdleConnections()
}

func (c *raftkvScenarioClient) put(ctx context.Context, node int, key string, value []byte) error {
	t := nethttpTarget{hc: c.hc, base: "http://" + c.addrs[node]}
	return t.Put(ctx, key, value)
}

func (c *raftkvScenarioClient) get(ctx context.Context, node int, key string) error {
	t := nethttpTarget{hc: c.hc, base: "http://" + c.addrs[node]}
	return t.Get(ctx, key)
}

func (c *raftkvScenarioClient) leader(ctx context.Context) (int, error) {
	var st struct {
		Leader *struct {
			HTTPAddr string `json:"http_addr"`
		} `json:"leader"`
	}
	if err := httpOK(ctx, c.hc, "http://"+c.addrs[0]+"/v1/cluster", &st); err != nil {
		return 0, err
	}
	if st.Leader == nil {
		return 0, errors.New("no leader")
	}
	for i, a := range c.addrs {
		if a == st.Leader.HTTPAddr {
			return i, nil
		}
	}
	return 0, fmt.Errorf("leader at %s is none of %v", st.Leader.HTTPAddr, c.addrs)
}

// watch reads GET /v1/watch as Server-Sent Events; only the changed keys are picked out of each
// message (the client's cost should stay small beside the servers').
func (c *raftkvScenarioClient) watch(ctx context.Context, node int, prefix string, ready func(), onKey func([]byte)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addrs[node]+"/v1/watch?prefix="+prefix, nil)
	if err != nil {
		return err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("watch: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	ready()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	event := ""
	keyTag := []byte(`"key":"`)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			event = ""
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("data: ")):
			data := line[len("data: "):]
			if event == "error" {
				return fmt.Errorf("watch ended: %s", data)
			}
			if event != "" {
				continue
			}
			for {
				i := bytes.Index(data, keyTag)
				if i < 0 {
					break
				}
				data = data[i+len(keyTag):]
				j := bytes.IndexByte(data, '"')
				if j < 0 {
					break
				}
				onKey(data[:j])
				data = data[j:]
			}
		}
	}
}

// ---- etcd through clientv3 ----

type etcdScenarioClient struct {
	cl        *etcdtarget.Clients
	endpoints []string
}

func (c *etcdScenarioClient) close() { c.cl.Close() }

func (c *etcdScenarioClient) put(ctx context.Context, node int, key string, value []byte) error {
	_, err := c.cl.Member(node).Put(ctx, key, string(value))
	return err
}

func (c *etcdScenarioClient) get(ctx context.Context, node int, key string) error {
	_, err := c.cl.Member(node).Get(ctx, key)
	return err
}

func (c *etcdScenarioClient) leader(ctx context.Context) (int, error) {
	for i, ep := range c.endpoints {
		st, err := c.cl.Member(i).Status(ctx, ep)
		if err != nil {
			return 0, err
		}
		if st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return 0, errors.New("no member says it leads")
}

func (c *etcdScenarioClient) watch(ctx context.Context, node int, prefix string, ready func(), onKey func([]byte)) error {
	ch := c.cl.Member(node).Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Created {
			ready()
			continue
		}
		for _, ev := range resp.Events {
			onKey(ev.Kv.Key)
		}
	}
	return ctx.Err()
}

// writeScenarios renders the scenario measures as one Markdown table.
func (r *report) writeScenarios(b *strings.Builder) {
	if len(r.Scenarios) == 0 {
		return
	}
	b.WriteString("\n## Large values and watch fan-out\n\n")
	b.WriteString("raftkv through Go's net/http client, etcd through clientv3; the ceiling has no counterpart. " +
		"Large values: 100 B linearizable gets and puts on the followers (half the small clients each), first alone, then beside the large writers " +
		"(each writer keeps one put in flight, spread over the nodes, 256 keys overwritten). RSS is read right " +
		"after the row; etcd keeps every revision until compaction, so its RSS follows bytes written, not stored. " +
		"Watch fan-out: watchers spread over the nodes, one prefix; latency from a put's acknowledgement to its " +
		"event at each watcher (0 when the event came first). better: which side of the ratio wins.\n\n")
	writeMDTable(b, []string{"scenario", "measure", "raftkv", "etcd", "raftkv/etcd", "better"}, func(yield func([]string)) {
		for _, m := range r.Scenarios {
			rk, okR := m.Values["raftkv"]
			et, okE := m.Values["etcd"]
			cell := func(v float64, ok bool) string {
				if !ok {
					return "-"
				}
				return strconv.FormatFloat(v, 'f', -1, 64) + " " + m.Unit
			}
			ratio := "-"
			if okR && okE && et != 0 {
				ratio = fmt.Sprintf("%.2f×", rk/et)
			}
			better := "higher"
			if m.LowerBetter {
				better = "lower"
			}
			yield([]string{m.Scenario, m.Name, cell(rk, okR), cell(et, okE), ratio, better})
		}
	})
}

// finishScenarios takes each measure's median over the rounds.
func (r *report) finishScenarios() {
	for _, m := range r.Scenarios {
		m.Values = map[string]float64{}
		for s, vs := range m.rounds {
			m.Values[s] = round(medianOf(vs), 2)
		}
	}
}

func medianOf(vs []float64) float64 {
	c := append([]float64(nil), vs...)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c[(len(c)-1)/2]
}
