package store

import (
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
)

// A bank of accounts moved by guarded transfers through every node (followers forward them): the total
// never changes, a transfer is never half applied, and a watcher on a follower sees each transfer's two
// writes as one change set.
func TestTxnTransfersThroughFollowersConserveTheTotal(t *testing.T) {
	c := newTestCluster(t)
	hubs := map[string]*recordingSink{}
	c.configure = func(id string, cfg *Config) {
		hubs[id] = &recordingSink{}
		cfg.Changes = hubs[id]
	}
	ids := c.startCluster(3)
	ctx := ctxT(t)
	leader := c.leader()
	const accounts, start = 4, 100
	for i := 0; i < accounts; i++ {
		_, err := c.nodes[leader].store.Put(ctx, "acct/"+strconv.Itoa(i), []byte(strconv.Itoa(start)), Precondition{})
		require.NoError(t, err)
	}

	var wg sync.WaitGroup
	for w, id := range ids {
		s := c.nodes[id].store
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 10; n++ {
				from, to := "acct/"+strconv.Itoa((w+n)%accounts), "acct/"+strconv.Itoa((w+n+1)%accounts)
				read, _, err := s.Txn(ctx, &fsm.Txn{Success: []fsm.TxnOp{{Kind: fsm.TxnGet, Key: from}, {Kind: fsm.TxnGet, Key: to}}}, Linearizable)
				if !assert.NoError(t, err) {
					return
				}
				a, b := read.Results[0].Entries[0], read.Results[1].Entries[0]
				av, _ := strconv.Atoi(string(a.Value))
				bv, _ := strconv.Atoi(string(b.Value))
				res, _, err := s.Txn(ctx, &fsm.Txn{
					Compare: []fsm.Compare{
						{Target: fsm.TargetModIndex, Op: fsm.CmpEqual, Key: from, Num: a.ModIndex},
						{Target: fsm.TargetModIndex, Op: fsm.CmpEqual, Key: to, Num: b.ModIndex},
					},
					Success: []fsm.TxnOp{
						{Kind: fsm.TxnPut, Key: from, Value: []byte(strconv.Itoa(av - 1))},
						{Kind: fsm.TxnPut, Key: to, Value: []byte(strconv.Itoa(bv + 1))},
					},
				}, Linearizable)
				if !assert.NoError(t, err) {
					return
				}
				_ = res.Succeeded // a lost race is fine; the total is what matters
			}
		}()
	}
	wg.Wait()

	for _, id := range ids {
		res, _, err := c.nodes[id].store.Txn(ctx, &fsm.Txn{Success: []fsm.TxnOp{{Kind: fsm.TxnList, Key: "acct/"}}}, Linearizable)
		require.NoError(t, err)
		total := 0
		for _, e := range res.Results[0].Entries {
			v, _ := strconv.Atoi(string(e.Value))
			total += v
		}
		assert.Equal(t, accounts*start, total, "node %s", id)
	}
	fol := c.follower()
	h := hubs[fol]
	h.mu.Lock()
	defer h.mu.Unlock()
	transfers := 0
	for _, ch := range h.changes {
		if len(ch) == 2 {
			transfers++
		}
		assert.LessOrEqual(t, len(ch), 2)
	}
	assert.Positive(t, transfers)
}

type recordingSink struct {
	mu      sync.Mutex
	changes [][]fsm.Change
}

func (r *recordingSink) Changed(_ uint64, c []fsm.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, append([]fsm.Change(nil), c...))
	r.mu.Unlock()
}
func (r *recordingSink) Restored(uint64) {}
