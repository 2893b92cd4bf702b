package test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

type linStats struct {
	reads, readsDropped                           atomic.Int64
	writesOK, writesMismatch, writesDropped, lost atomic.Int64
}

// linClient is one workload client (harness.LinClient): it sends each request to a random node.
type linClient struct {
	rng   *rand.Rand
	lin   *harness.LinClient
	nodes []*harness.Client // one per node, own connections
	names []string
	stats *linStats
}

func (lc *linClient) step(keys []string) {
	n := lc.rng.IntN(len(lc.nodes))
	switch lc.lin.Step(lc.nodes[n], lc.names[n], keys) {
	case harness.Read:
		lc.stats.reads.Add(1)
	case harness.ReadFailed:
		lc.stats.readsDropped.Add(1)
	case harness.Wrote:
		lc.stats.writesOK.Add(1)
	case harness.Mismatched:
		lc.stats.writesMismatch.Add(1)
	case harness.WriteNoEffect:
		lc.stats.writesDropped.Add(1)
	case harness.WriteIndeterminate:
		lc.stats.lost.Add(1)
	}
}

// A randomized concurrent workload (get/put/cas/delete over a few keys, and multi-key transactions
// on pairs of them, unique values, each request to a random node) under faults: kill -9 and restart of a random node, SIGSTOP/SIGCONT of
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
		rng := rand.New(rand.NewPCG(seed, uint64(id+1)))
		lc := &linClient{rng: rng, lin: harness.NewLinClient(id, rng, rec), stats: stats}
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
		require.NoError(t, lincheck.RejectsMutations(history, linCheckTimeout, t.Logf))
	}
}
