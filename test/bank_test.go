package test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// The bank under faults (issue 12): transfers between five accounts by transactions guarded on both
// accounts' mod indexes, each to a random live node, retried on a compare failure and resent under
// their idempotency key when the answer was lost; readers read every account at one index
// (harness.Bank). Across a kill -9 of the leader, a SIGSTOP of the next one and a kill -9 of a random
// node, every read's total is the initial total, each reader's index never goes back, and once every
// transfer's fate is known, replaying the applied ones in index order gives exactly what every read
// and the final read saw. A balance changed behind the bank's back must then fail the same checks.
func TestBankTransfersConserveTheTotalUnderFaults(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	c.Leader(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	bank := harness.NewBank(harness.BankConfig{Prefix: "bank/", Accounts: 5, Initial: 100, RunID: strconv.FormatUint(seed, 36)})
	clients := func() []*harness.Client {
		var cls []*harness.Client
		for i := 0; i < c.Size(); i++ {
			cls = append(cls, harness.NewClient(c.Node(i).HTTPAddr, 3*time.Second))
		}
		return cls
	}
	live := func(r *rand.Rand, cls []*harness.Client) *harness.Client {
		l := c.Live()
		if len(l) == 0 {
			return nil
		}
		return cls[l[r.IntN(len(l))]]
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	run := func(id uint64, step func(*rand.Rand, *harness.Client) bool) {
		r := rand.New(rand.NewPCG(seed, id))
		cls := clients()
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := time.Duration(0)
			for {
				select {
				case <-stop:
					return
				case <-time.After(backoff): // a client backs off while the cluster does not answer
				}
				if cl := live(r, cls); cl != nil && step(r, cl) {
					backoff = 0
				} else {
					backoff = min(max(2*backoff, 10*time.Millisecond), 300*time.Millisecond)
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		run(uint64(10+i), func(r *rand.Rand, cl *harness.Client) bool { return bank.TransferStep(r, i, cl) })
	}
	for i := 0; i < 2; i++ {
		run(uint64(20+i), func(r *rand.Rand, cl *harness.Client) bool { return bank.ReadStep(r, i, cl) })
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

	progress := func(what string, transfers int) {
		before := bank.Stats().Transfers
		harness.WaitFor(t, 2*harness.LeaderTimeout, what, func() error {
			if p := bank.Problems(); len(p) > 0 {
				return harness.Permanent(fmt.Errorf("the bank found %d problems: %v", len(p), p[:min(len(p), 5)]))
			}
			if n := bank.Stats().Transfers - before; n < transfers {
				return fmt.Errorf("%d transfers so far", n)
			}
			return nil
		})
	}
	// The nemesis. Durations here are how long a fault lasts, not waits for a state.
	progress("transfers before the faults", 30)
	leader := c.Leader(t)
	c.Kill9(leader)
	progress("transfers under a new leader", 20)
	c.Restart(leader)
	c.WaitReady(t, leader)
	leader = c.Leader(t)
	c.Pause(leader)
	time.Sleep(3 * time.Second)
	c.Resume(leader)
	progress("transfers after the pause", 20)
	victim := rng.IntN(c.Size())
	c.Kill9(victim)
	time.Sleep(2 * time.Second)
	c.Restart(victim)
	c.WaitAllReady(t)
	progress("transfers after the restart", 20)
	stopClients()

	cls := clients()
	pick := func() *harness.Client { return cls[rng.IntN(len(cls))] }
	require.NoError(t, bank.Resolve(harness.LeaderTimeout, pick), "every transfer of unknown outcome gets a definite answer on the healed cluster")
	res := bank.Verify(harness.LeaderTimeout, pick)
	t.Logf("bank: %+v", res.Stats)
	assert.Empty(t, res.Problems)
	assert.Zero(t, res.Unresolved)
	assert.Greater(t, res.Stats.Reads, 50, "too few reads for a meaningful check")
	assert.Greater(t, res.Stats.CompareFailures, 0, "the transferers never raced: the guards went untested")

	// The checks can fail: a deposit nobody made, behind the bank's back.
	r := pick().Put("bank/000", []byte("1000"))
	require.True(t, r.OK(), "%v", r)
	bad := bank.Verify(harness.LeaderTimeout, pick)
	require.NotEmpty(t, bad.Problems, "the bank's checks must notice a balance no transfer explains")
	t.Logf("after tampering: %v", bad.Problems)
}
