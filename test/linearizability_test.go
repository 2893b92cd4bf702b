package test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
	"github.com/raftkv/raftkv/test/lincheck"
)

// Chaos workload parameters.
const (
	linClients        = 5
	linKeys           = 4
	linRequestTimeout = 4 * time.Second
	linCheckTimeout   = 30 * time.Second
)

// linClient is one workload client: it sends each request to a random node and records it.
type linClient struct {
	id      int
	rng     *rand.Rand
	nodes   []*harness.Client // one per node, own connections
	names   []string
	rec     *lincheck.Recorder
	lastMod map[string]uint64 // last modify index this client saw per key (0: absent/unknown)
	seq     int
	stats   *linStats
}

type linStats struct {
	reads, readsDropped                           atomic.Int64
	writesOK, writesMismatch, writesDropped, lost atomic.Int64
}

func (lc *linClient) step(keys []string) {
	key := keys[lc.rng.IntN(len(keys))]
	n := lc.rng.IntN(len(lc.nodes))
	node, name := lc.nodes[n], lc.names[n]
	lc.seq++
	value := fmt.Sprintf("c%d-%d", lc.id, lc.seq)

	var in lincheck.Input
	var send func() *harness.Response
	switch p := lc.rng.IntN(100); {
	case p < 40:
		in = lincheck.Input{Kind: lincheck.Get, Key: key}
		send = func() *harness.Response { return node.Get(key) }
		if lc.rng.IntN(4) == 0 { // a read-only transaction is a linearizable read too
			send = func() *harness.Response { return node.TxnGet(key) }
		}
	case p < 65:
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value}
		send = func() *harness.Response { return node.Put(key, []byte(value)) }
	case p < 85:
		expected := lc.lastMod[key]
		if lc.rng.IntN(5) == 0 { // sometimes a deliberately unlikely guess
			expected = uint64(lc.rng.IntN(3))
		}
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value, CAS: true, Expected: expected}
		send = func() *harness.Response { return node.CAS(key, expected, []byte(value)) }
		if lc.rng.IntN(2) == 0 { // the same cas as a transaction: its outcome must fit the same history
			send = func() *harness.Response { return node.TxnCAS(key, expected, []byte(value)) }
		}
	default:
		if expected := lc.lastMod[key]; expected != 0 && lc.rng.IntN(2) == 0 {
			in = lincheck.Input{Kind: lincheck.Delete, Key: key, CAS: true, Expected: expected}
			send = func() *harness.Response { return node.DeleteCAS(key, expected) }
		} else {
			in = lincheck.Input{Kind: lincheck.Delete, Key: key}
			send = func() *harness.Response { return node.Delete(key) }
		}
	}

	call := lc.rec.Begin(lc.id, in, name)
	r := send()
	if in.Kind == lincheck.Get {
		switch {
		case r.Err == nil && r.Status == http.StatusOK:
			call.Return(lincheck.Output{Status: lincheck.OK, Found: true, Value: string(r.Body), ModIndex: r.ModIndex, CreateIndex: r.CreateIndex})
			lc.lastMod[key] = r.ModIndex
			lc.stats.reads.Add(1)
		case r.Err == nil && r.Status == http.StatusNotFound && r.Code == "key_not_found":
			call.Return(lincheck.Output{Status: lincheck.OK})
			lc.lastMod[key] = 0
			lc.stats.reads.Add(1)
		default: // a failed read had no effect: drop it
			lc.stats.readsDropped.Add(1)
		}
		return
	}
	switch r.Outcome() {
	case harness.Applied:
		call.Return(lincheck.Output{Status: lincheck.OK, Index: r.Index, Deleted: r.Deleted})
		lc.lastMod[key] = r.Index
		if in.Kind == lincheck.Delete {
			lc.lastMod[key] = 0
		}
		lc.stats.writesOK.Add(1)
	case harness.CASFailed:
		call.Return(lincheck.Output{Status: lincheck.Mismatch, Current: r.CurrentIndex})
		lc.lastMod[key] = r.CurrentIndex
		lc.stats.writesMismatch.Add(1)
	case harness.NoEffect:
		lc.stats.writesDropped.Add(1)
	case harness.Indeterminate:
		call.Indeterminate()
		lc.stats.lost.Add(1)
	}
}

// A randomized concurrent workload (get/put/cas/delete over a few keys, unique values, each
// request to a random node) under faults: kill -9 and restart of a random node, SIGSTOP/SIGCONT of
// the leader. The recorded history must be linearizable, values and indexes alike.
func TestLinearizableUnderFaults(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	c.Leader(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	keys := make([]string, linKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("lin-%c", 'a'+i)
	}
	rec := lincheck.NewRecorder()
	stats := &linStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := 0; id < linClients; id++ {
		lc := &linClient{id: id, rng: rand.New(rand.NewPCG(seed, uint64(id+1))), rec: rec, lastMod: map[string]uint64{}, stats: stats}
		for i := 0; i < c.Size(); i++ {
			lc.nodes = append(lc.nodes, harness.NewClient(c.Node(i).HTTPAddr, linRequestTimeout))
			lc.names = append(lc.names, c.Node(i).ID)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					lc.step(keys)
				}
			}
		}()
	}
	stopClients := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopClients()

	// The nemesis. Durations here are how long a fault lasts, not waits for a state.
	start := time.Now()
	phase := func(what string) { t.Logf("nemesis %6.2fs: %s", time.Since(start).Seconds(), what) }
	time.Sleep(3 * time.Second)
	victim := rng.IntN(3)
	phase("kill -9 " + c.Node(victim).ID)
	c.Kill9(victim)
	time.Sleep(2 * time.Second)
	phase("restart " + c.Node(victim).ID)
	c.Restart(victim)
	c.WaitReady(t, victim)
	leader := c.Leader(t)
	phase("SIGSTOP leader " + c.Node(leader).ID)
	c.Pause(leader)
	time.Sleep(4 * time.Second)
	phase("SIGCONT " + c.Node(leader).ID)
	c.Resume(leader)
	if d := time.Until(start.Add(15 * time.Second)); d > 2*time.Second {
		time.Sleep(d)
	} else {
		time.Sleep(2 * time.Second)
	}
	phase("stop")
	stopClients()

	history := rec.History()
	t.Logf("history: %d operations; reads %d (+%d failed, dropped); writes %d ok, %d cas mismatch, %d indeterminate, %d without effect (dropped)",
		len(history), stats.reads.Load(), stats.readsDropped.Load(), stats.writesOK.Load(), stats.writesMismatch.Load(),
		stats.lost.Load(), stats.writesDropped.Load())
	require.Greater(t, stats.writesOK.Load(), int64(100), "too few successful writes for a meaningful check")
	require.Greater(t, stats.reads.Load(), int64(100), "too few successful reads for a meaningful check")
	lincheck.Verify(t, history, linCheckTimeout)
	if !t.Failed() && !t.Skipped() {
		requireRejectsMutations(t, history)
	}
}

// requireRejectsMutations shows the checker can say no on this very history: a read given a value
// nobody wrote, or another mod index, must make it illegal.
func requireRejectsMutations(t *testing.T, history []porcupine.Operation) {
	last := -1
	for i, op := range history {
		if in, out := op.Input.(lincheck.Input), op.Output.(lincheck.Output); in.Kind == lincheck.Get && out.Found {
			last = i
		}
	}
	require.GreaterOrEqual(t, last, 0, "no successful read in the history")
	for _, mutate := range []func(*lincheck.Output){
		func(o *lincheck.Output) { o.Value = "never-written" },
		func(o *lincheck.Output) { o.ModIndex++ },
	} {
		h := append([]porcupine.Operation(nil), history...)
		out := h[last].Output.(lincheck.Output)
		mutate(&out)
		h[last].Output = out
		res := porcupine.CheckOperationsTimeout(lincheck.Model, h, linCheckTimeout)
		require.Equal(t, porcupine.Illegal, res, "the checker must reject a mutated read %+v", out)
	}
}
