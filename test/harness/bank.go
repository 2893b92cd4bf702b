package harness

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bank is the transactions-under-faults workload (issue 12), shared by the process tests and the chaos
// suite: Accounts keys under Prefix hold balances; transferers move money between two accounts with a
// transaction guarded by both accounts' mod indexes (on a compare failure they retry with the balances
// its failure branch read); readers read every account in one read-only transaction (a list of the
// prefix, or a get of each), linearizably, at one index.
//
// Every transfer carries an Idempotency-Key. One whose answer is lost (timeout, broken connection, 503
// indeterminate) may or may not have applied: the transferer resends it, same key and body, until an
// answer says which (the server answers a retry with the first run's result) — before its next transfer,
// and for whatever is left at the end on the healed cluster (Resolve). The total is conserved whatever
// the outcome, because a transaction is atomic.
//
// Verify then checks: every read's total is the initial total; each reader's indexes never go back;
// once every transfer is resolved, replaying the applied transfers in index order gives exactly the
// balances every read saw at its index and the final ones (no transfer lost, doubled or half applied,
// no read of a state the store never had); and no read's index is below a transfer acknowledged before
// the read was sent.
type Bank struct {
	cfg BankConfig

	mu       sync.Mutex
	initDone bool
	initIdx  uint64
	applied  []bankTransfer          // by a definite answer, in no particular order
	pending  map[string]bankTransfer // idempotency key → sent, outcome unknown
	reads    []bankRead
	problems []string
	stats    BankStats
	seq      int
}

// BankConfig sizes the bank.
type BankConfig struct {
	Prefix   string // "bank/"
	Accounts int
	Initial  int // every account's starting balance
	// RunID makes the idempotency keys of this bank unique (a cluster keeps them for its dedup window).
	RunID string
}

// BankStats counts what the workload did.
type BankStats struct {
	Transfers, CompareFailures, Indeterminate, Resolved, ResolvedApplied, NoEffect int
	Reads, ReadsFailed                                                             int
}

type bankTransfer struct {
	key, body string
	from, to  int
	amount    int
	index     uint64    // when applied
	acked     time.Time // when the answer arrived
}

type bankRead struct {
	reader   int
	index    uint64
	balances []int
	sent     time.Time
}

// NewBank makes a bank; Init creates its accounts.
func NewBank(cfg BankConfig) *Bank {
	if cfg.Prefix == "" {
		cfg.Prefix = "bank/"
	}
	return &Bank{cfg: cfg, pending: map[string]bankTransfer{}}
}

func (b *Bank) account(i int) string { return fmt.Sprintf("%s%03d", b.cfg.Prefix, i) }

// Total is the sum of the balances, always.
func (b *Bank) Total() int { return b.cfg.Accounts * b.cfg.Initial }

// Stats returns the counts so far.
func (b *Bank) Stats() BankStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Problems returns what the workload has found wrong so far (Verify adds the end-of-run checks).
func (b *Bank) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.problems)
}

// Ready reports whether the accounts exist.
func (b *Bank) Ready() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.initDone
}

// InitStep tries once to create every account in one transaction (only if none exists), under one
// idempotency key so that a retry of a lost answer is safe. It reports whether the accounts exist.
func (b *Bank) InitStep(cl *Client) bool {
	if b.Ready() {
		return true
	}
	var cmp, puts []string
	for i := 0; i < b.cfg.Accounts; i++ {
		cmp = append(cmp, fmt.Sprintf(`{"key":%q,"target":"exists","op":"=","value":false}`, b.account(i)))
		puts = append(puts, fmt.Sprintf(`{"op":"put","key":%q,"value":%q}`, b.account(i), b64(strconv.Itoa(b.cfg.Initial))))
	}
	body := `{"compare":[` + strings.Join(cmp, ",") + `],"success":[` + strings.Join(puts, ",") + `]}`
	r := b.send(cl, "bank-init-"+b.cfg.RunID, body)
	if r.Err != nil || r.Status != http.StatusOK {
		return false
	}
	ans, err := decodeBankTxn(r.Body)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err != nil:
		b.problems = append(b.problems, err.Error())
		return false
	case !ans.Succeeded:
		b.problems = append(b.problems, "creating the accounts: some already existed (another bank with this prefix?)")
		return false
	}
	b.initDone, b.initIdx = true, ans.Index
	return true
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (b *Bank) send(cl *Client, idemKey, body string) *Response {
	ctx, cancel := context.WithTimeout(WithHeader(context.Background(), "Idempotency-Key", idemKey), cl.Timeout)
	defer cancel()
	return cl.DoContext(ctx, http.MethodPost, "/v1/txn", []byte(body))
}

type bankTxnAnswer struct {
	Succeeded bool   `json:"succeeded"`
	Index     uint64 `json:"index"`
	Results   []struct {
		Op       string `json:"op"`
		Found    bool   `json:"found"`
		Key      string `json:"key"`
		Value    []byte `json:"value"`
		ModIndex uint64 `json:"mod_index"`
		Entries  []struct {
			Key      string `json:"key"`
			Value    []byte `json:"value"`
			ModIndex uint64 `json:"mod_index"`
		} `json:"entries"`
	} `json:"results"`
}

func decodeBankTxn(body []byte) (*bankTxnAnswer, error) {
	var ans bankTxnAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("bank: bad txn answer %q: %w", body, err)
	}
	if ans.Index == 0 {
		return nil, fmt.Errorf("bank: txn answer without an index: %q", body)
	}
	return &ans, nil
}

// balanceOf parses a balance; a value that is not a number is a problem.
func (b *Bank) balanceOf(key string, v []byte) (int, bool) {
	n, err := strconv.Atoi(string(v))
	if err != nil {
		b.problem("account %s holds %q, not a balance", key, v)
		return 0, false
	}
	return n, true
}

func (b *Bank) problem(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// TransferStep first resolves this transferer's own unresolved transfers (resending them), then makes
// one transfer between two random accounts. It reports whether it got a definite answer.
func (b *Bank) TransferStep(rng *rand.Rand, transferer int, cl *Client) bool {
	if !b.Ready() {
		return b.InitStep(cl)
	}
	if mine := b.pendingOf(transferer); len(mine) > 0 {
		for _, p := range mine {
			if !b.resolve(p, cl) {
				return false
			}
		}
	}
	from, to := rng.IntN(b.cfg.Accounts), rng.IntN(b.cfg.Accounts-1)
	if to >= from {
		to++
	}
	amount := 1 + rng.IntN(10)
	fk, tk := b.account(from), b.account(to)
	read := cl.Do(http.MethodPost, "/v1/txn", []byte(fmt.Sprintf(`{"success":[{"op":"get","key":%q},{"op":"get","key":%q}]}`, fk, tk)))
	if r := read; r.Err != nil || r.Status != http.StatusOK {
		return false
	}
	ans, err := decodeBankTxn(read.Body)
	if err != nil || len(ans.Results) != 2 || !ans.Results[0].Found || !ans.Results[1].Found {
		b.problem("reading accounts %s and %s: %q (%v)", fk, tk, read.Body, err)
		return false
	}
	for attempt := 0; attempt < 5; attempt++ {
		fv, ok1 := b.balanceOf(fk, ans.Results[0].Value)
		tv, ok2 := b.balanceOf(tk, ans.Results[1].Value)
		if !ok1 || !ok2 {
			return false
		}
		body := fmt.Sprintf(`{"compare":[{"key":%q,"target":"mod_index","op":"=","value":%d},{"key":%q,"target":"mod_index","op":"=","value":%d}],`+
			`"success":[{"op":"put","key":%q,"value":%q},{"op":"put","key":%q,"value":%q}],`+
			`"failure":[{"op":"get","key":%q},{"op":"get","key":%q}]}`,
			fk, ans.Results[0].ModIndex, tk, ans.Results[1].ModIndex,
			fk, b64(strconv.Itoa(fv-amount)), tk, b64(strconv.Itoa(tv+amount)), fk, tk)
		b.mu.Lock()
		b.seq++
		tr := bankTransfer{key: fmt.Sprintf("bank-%s-%d-%d", b.cfg.RunID, transferer, b.seq), body: body, from: from, to: to, amount: amount}
		b.mu.Unlock()
		r := b.send(cl, tr.key, body)
		switch {
		case r.Err == nil && r.Status == http.StatusOK:
			next, err := b.settle(tr, r)
			if err != nil || next == nil {
				return err == nil
			}
			ans = next // guards were stale: retry with what the failure branch read
		case r.Outcome() == NoEffect:
			b.mu.Lock()
			b.stats.NoEffect++
			b.mu.Unlock()
			return false
		default:
			b.mu.Lock()
			b.stats.Indeterminate++
			b.pending[tr.key] = tr
			b.mu.Unlock()
			return false
		}
	}
	return true
}

// settle records a transfer's definite answer. On a compare failure it returns the answer, whose
// failure branch read both accounts.
func (b *Bank) settle(tr bankTransfer, r *Response) (*bankTxnAnswer, error) {
	ans, err := decodeBankTxn(r.Body)
	if err == nil && !ans.Succeeded && (len(ans.Results) != 2 || !ans.Results[0].Found || !ans.Results[1].Found) {
		err = fmt.Errorf("bank: a failed transfer's reads: %q", r.Body)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.problems = append(b.problems, err.Error())
		return nil, err
	}
	if !ans.Succeeded {
		b.stats.CompareFailures++
		return ans, nil
	}
	tr.index, tr.acked = ans.Index, time.Now()
	b.applied = append(b.applied, tr)
	b.stats.Transfers++
	return nil, nil
}

func (b *Bank) pendingOf(transferer int) []bankTransfer {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []bankTransfer
	prefix := fmt.Sprintf("bank-%s-%d-", b.cfg.RunID, transferer)
	for k, p := range b.pending {
		if transferer < 0 || strings.HasPrefix(k, prefix) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(x, y bankTransfer) int { return strings.Compare(x.key, y.key) })
	return out
}

// resolve resends an unresolved transfer with its key; it reports whether the answer was definite.
func (b *Bank) resolve(p bankTransfer, cl *Client) bool {
	r := b.send(cl, p.key, p.body)
	if r.Err != nil || r.Status != http.StatusOK {
		if r.Err == nil && r.Status == http.StatusUnprocessableEntity {
			b.problem("resending transfer %s: %v", p.key, r)
		}
		return false
	}
	b.mu.Lock()
	delete(b.pending, p.key)
	b.stats.Resolved++
	b.mu.Unlock()
	ans, err := b.settle(p, r)
	if err == nil && ans == nil {
		b.mu.Lock()
		b.stats.ResolvedApplied++
		b.mu.Unlock()
	}
	return true
}

// Resolve resends every unresolved transfer until each has a definite answer, through the clients
// pick returns, for at most timeout. Call it after the workload stopped, on a healed cluster.
func (b *Bank) Resolve(timeout time.Duration, pick func() *Client) error {
	return Poll(timeout, func() error {
		left := b.pendingOf(-1)
		for _, p := range left {
			if cl := pick(); cl == nil || !b.resolve(p, cl) {
				return fmt.Errorf("%d transfers of unknown outcome left", len(b.pendingOf(-1)))
			}
		}
		return nil
	})
}

// ReadStep reads every account in one linearizable read-only transaction (a list of the prefix, or a
// get of each, by turns) and checks the total. It reports whether it got an answer.
func (b *Bank) ReadStep(rng *rand.Rand, reader int, cl *Client) bool {
	if !b.Ready() {
		return false
	}
	sent := time.Now()
	balances, index, err := b.readAll(cl, rng.IntN(2) == 0)
	if err != nil {
		b.mu.Lock()
		b.stats.ReadsFailed++
		b.mu.Unlock()
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Reads++
	sum := 0
	for _, v := range balances {
		sum += v
	}
	if sum != b.Total() {
		b.problems = append(b.problems, fmt.Sprintf("reader %d: total %d at index %d, not %d: %v", reader, sum, index, b.Total(), balances))
	}
	for i := len(b.reads) - 1; i >= 0; i-- {
		if prev := b.reads[i]; prev.reader == reader {
			if index < prev.index {
				b.problems = append(b.problems, fmt.Sprintf("reader %d: index %d after %d (a linearizable read went back)", reader, index, prev.index))
			}
			break
		}
	}
	b.reads = append(b.reads, bankRead{reader: reader, index: index, balances: balances, sent: sent})
	return true
}

// readAll reads every balance in one read-only transaction.
func (b *Bank) readAll(cl *Client, list bool) ([]int, uint64, error) {
	var body string
	if list {
		body = fmt.Sprintf(`{"success":[{"op":"list","prefix":%q,"limit":%d}]}`, b.cfg.Prefix, b.cfg.Accounts+1)
	} else {
		var gets []string
		for i := 0; i < b.cfg.Accounts; i++ {
			gets = append(gets, fmt.Sprintf(`{"op":"get","key":%q}`, b.account(i)))
		}
		body = `{"success":[` + strings.Join(gets, ",") + `]}`
	}
	r := cl.Do(http.MethodPost, "/v1/txn", []byte(body))
	if r.Err != nil || r.Status != http.StatusOK {
		return nil, 0, fmt.Errorf("%v", r)
	}
	ans, err := decodeBankTxn(r.Body)
	if err != nil {
		b.problem("%v", err)
		return nil, 0, err
	}
	balances := make([]int, b.cfg.Accounts)
	seen := 0
	take := func(key string, v []byte) {
		var i int
		if _, err := fmt.Sscanf(strings.TrimPrefix(key, b.cfg.Prefix), "%d", &i); err != nil || i < 0 || i >= b.cfg.Accounts || key != b.account(i) {
			b.problem("unexpected key %q under the bank's prefix", key)
			return
		}
		if n, ok := b.balanceOf(key, v); ok {
			balances[i] = n
			seen++
		}
	}
	switch {
	case list && len(ans.Results) == 1:
		for _, e := range ans.Results[0].Entries {
			take(e.Key, e.Value)
		}
	case !list && len(ans.Results) == b.cfg.Accounts:
		for i, res := range ans.Results {
			if res.Found {
				take(b.account(i), res.Value)
			}
		}
	}
	if seen != b.cfg.Accounts {
		err := fmt.Errorf("bank: a read of every account answered %q", r.Body)
		b.problem("%v", err)
		return nil, 0, err
	}
	return balances, ans.Index, nil
}

// BankResult is what Verify found.
type BankResult struct {
	Stats BankStats
	// Unresolved: transfers still of unknown outcome (then the exact replay is skipped).
	Unresolved int
	Problems   []string
}

// Verify reads the final balances through pick (after Stop and Resolve, on a healed cluster) and checks
// everything the workload recorded (see Bank).
func (b *Bank) Verify(timeout time.Duration, pick func() *Client) BankResult {
	var final []int
	var finalIdx uint64
	err := Poll(timeout, func() error {
		cl := pick()
		if cl == nil {
			return errors.New("no node to read from")
		}
		var err error
		final, finalIdx, err = b.readAll(cl, true)
		return err
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	res := BankResult{Stats: b.stats, Unresolved: len(b.pending), Problems: slices.Clone(b.problems)}
	if !b.initDone {
		res.Problems = append(res.Problems, "the accounts were never created")
		return res
	}
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("reading the final balances: %v", err))
		return res
	}
	sum := 0
	for _, v := range final {
		sum += v
	}
	if sum != b.Total() {
		res.Problems = append(res.Problems, fmt.Sprintf("final total %d at index %d, not %d: %v", sum, finalIdx, b.Total(), final))
	}
	reads := append(slices.Clone(b.reads), bankRead{reader: -1, index: finalIdx, balances: final, sent: time.Now()})
	transfers := slices.Clone(b.applied)
	slices.SortFunc(transfers, func(x, y bankTransfer) int { return cmp.Compare(x.index, y.index) })
	for i := 1; i < len(transfers); i++ {
		if transfers[i].index == transfers[i-1].index {
			res.Problems = append(res.Problems, fmt.Sprintf("two transfers applied at index %d", transfers[i].index))
		}
	}
	for _, r := range reads {
		if r.index < b.initIdx {
			res.Problems = append(res.Problems, fmt.Sprintf("a read at index %d, before the accounts were created at %d", r.index, b.initIdx))
		}
		for _, t := range transfers {
			if t.acked.Before(r.sent) && t.index > r.index {
				res.Problems = append(res.Problems, fmt.Sprintf("a read sent after transfer %s was acknowledged at index %d read index %d", t.key, t.index, r.index))
				break
			}
		}
	}
	if len(b.pending) > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d transfers of unknown outcome were never resolved", len(b.pending)))
		return res
	}
	// Every transfer's fate is known: replay them in index order; every read must be the state at its index.
	slices.SortStableFunc(reads, func(x, y bankRead) int { return cmp.Compare(x.index, y.index) })
	state := make([]int, b.cfg.Accounts)
	for i := range state {
		state[i] = b.cfg.Initial
	}
	next, bad := 0, 0
	for _, r := range reads {
		for next < len(transfers) && transfers[next].index <= r.index {
			t := transfers[next]
			state[t.from] -= t.amount
			state[t.to] += t.amount
			next++
		}
		if !slices.Equal(state, r.balances) && bad < 5 {
			bad++
			who := fmt.Sprintf("reader %d", r.reader)
			if r.reader < 0 {
				who = "the final read"
			}
			res.Problems = append(res.Problems, fmt.Sprintf("%s at index %d saw %v; the applied transfers up to it give %v", who, r.index, r.balances, state))
		}
	}
	return res
}
