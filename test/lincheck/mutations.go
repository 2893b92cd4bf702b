package lincheck

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// RejectsMutations shows the checker can say no on this very history: a successful read, given a
// value nobody wrote or another modify index, must make it illegal, and so must a read-only
// transaction's get given a value nobody wrote. The reads are taken on the keys with the fewest writes
// of unknown outcome: proving a history illegal means exhausting every way to linearize its keys,
// which those make expensive. A search that runs out of time proves nothing either way and is only
// logged.
func RejectsMutations(history []porcupine.Operation, timeout time.Duration, logf func(string, ...any)) error {
	unknown := map[string]int{}
	for _, op := range history {
		if op.Output.(Output).Status == Unknown {
			for _, k := range op.Input.(Input).Keys() {
				unknown[k]++
			}
		}
	}
	cost := func(i int) int {
		n := 0
		for _, k := range history[i].Input.(Input).Keys() {
			n += unknown[k]
		}
		return n
	}
	pick, pickTxn := -1, -1
	for i, op := range history {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == Get && out.Found && (pick < 0 || cost(i) <= cost(pick)) {
			pick = i
		}
		if in.Kind == Txn && !in.Writes() && len(out.Results) > 0 && out.Results[0].Found &&
			(pickTxn < 0 || cost(i) <= cost(pickTxn)) {
			pickTxn = i
		}
	}
	if pick < 0 {
		return errors.New("no successful read in the history")
	}
	type mutation struct {
		at     int
		mutate func(*Output)
	}
	mutations := []mutation{
		{pick, func(o *Output) { o.Value = "never-written" }},
		{pick, func(o *Output) { o.ModIndex++ }},
	}
	if pickTxn < 0 {
		logf("no read-only transaction that found a key in the history: its mutation is not tried")
	} else {
		mutations = append(mutations, mutation{pickTxn, func(o *Output) {
			o.Results = slices.Clone(o.Results)
			o.Results[0].Value = "never-written"
		}})
	}
	for _, m := range mutations {
		h := slices.Clone(history)
		out := h[m.at].Output.(Output)
		m.mutate(&out)
		h[m.at].Output = out
		keys := h[m.at].Input.(Input).Keys()
		switch res := porcupine.CheckOperationsTimeout(Model, h, timeout); res {
		case porcupine.Illegal:
		case porcupine.Unknown:
			logf("mutation check inconclusive (porcupine timed out) for a read of %q", keys)
		default:
			return fmt.Errorf("a mutated read %+v of %q was judged %s", out, keys, res)
		}
	}
	return nil
}
