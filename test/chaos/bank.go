package chaos

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/test/harness"
)

// The bank (issue 12, transactions under faults; harness.Bank): transferers move money between
// accounts by transactions guarded on both accounts' mod indexes, each to a random running node, and
// resend a transfer whose answer was lost under its idempotency key until they learn its outcome;
// readers read every account at one index. VerifyBank resolves what is still unknown on the healed
// cluster and checks the totals, each reader's index order and the exact replay of the applied transfers.

// bankScenarios run the bank beside the rest of the workload: a representative subset (leader killed,
// paused and cut off, a graceful restart of every member, a member replaced from a snapshot, and the
// mixed nemesis), so that the extra load stays off the other scenarios on a 2-core CI machine.
var bankScenarios = map[string]bool{
	"kill-leader": true, "pause-leader": true, "partition-leader": true, "rolling-restart": true,
	"member-replace-wiped": true, "mixed": true,
}

const (
	bankAccounts = 5
	bankInitial  = 100
)

func (w *Workload) startBank() {
	if w.cfg.BankTransferers == 0 && w.cfg.BankReaders == 0 {
		return
	}
	w.bank = harness.NewBank(harness.BankConfig{Prefix: "bank/", Accounts: bankAccounts, Initial: bankInitial,
		RunID: strconv.FormatUint(w.cfg.Seed, 36)})
	for id := 0; id < w.cfg.BankTransferers; id++ {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(3000+id)))
		w.loop(func() bool {
			node, cl := w.target(rng)
			if node == nil {
				return false
			}
			return w.bank.TransferStep(rng, id, cl)
		})
	}
	for id := 0; id < w.cfg.BankReaders; id++ {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(4000+id)))
		w.loop(func() bool {
			node, cl := w.target(rng)
			if node == nil {
				return false
			}
			return w.bank.ReadStep(rng, id, cl)
		})
	}
}

// VerifyBank resolves every transfer of unknown outcome through the members, then reads the final
// balances and checks what the bank recorded. Call it after Stop, on a healthy cluster. It returns
// nil when the workload ran no bank.
func (w *Workload) VerifyBank(timeout time.Duration) *harness.BankResult {
	if w.bank == nil {
		return nil
	}
	rng := rand.New(rand.NewPCG(w.cfg.Seed, 5000))
	pick := func() *harness.Client {
		members := w.c.Members()
		for _, i := range rng.Perm(len(members)) {
			if cl := members[i].Client(); cl != nil {
				return cl
			}
		}
		return nil
	}
	var res harness.BankResult
	if err := w.bank.Resolve(max(timeout, time.Second), pick); err != nil {
		res = w.bank.Verify(max(timeout, time.Second), pick)
		res.Problems = append(res.Problems, "resolving transfers on the healed cluster: "+err.Error())
		return &res
	}
	res = w.bank.Verify(max(timeout, time.Second), pick)
	return &res
}
