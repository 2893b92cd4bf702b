package harness

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/raftkv/raftkv/test/lincheck"
)

// Transactions of the linearizability workload: multi-key compares and writes, and read-only
// transactions, on pairs of keys (key 2i with key 2i+1 of the keys a step is given), so that
// porcupine's partitions stay two keys wide (lincheck couples the keys a transaction touches).

// partner is the key a transaction may couple keys[i] with, or "" when it has none.
func partner(keys []string, i int) string {
	if j := i ^ 1; j < len(keys) {
		return keys[j]
	}
	return ""
}

// randomTxn makes a transaction on keys a and b, guarded by what this client last saw of them.
func (lc *LinClient) randomTxn(a, b string) lincheck.Input {
	value := func() string {
		lc.seq++
		return fmt.Sprintf("c%d-%d", lc.id, lc.seq)
	}
	if lc.rng.IntN(2) == 0 {
		a, b = b, a
	}
	get := func(k string) lincheck.TxnOp { return lincheck.TxnOp{Kind: lincheck.Get, Key: k} }
	put := func(k string) lincheck.TxnOp { return lincheck.TxnOp{Kind: lincheck.Put, Key: k, Value: value()} }
	del := func(k string) lincheck.TxnOp { return lincheck.TxnOp{Kind: lincheck.Delete, Key: k} }
	guard := func(k string) lincheck.Compare {
		expected := lc.lastMod[k]
		if lc.rng.IntN(6) == 0 { // now and then a guess that is most likely wrong
			expected = uint64(lc.rng.IntN(3))
		}
		return lincheck.Compare{Key: k, Target: lincheck.CmpModIndex, Num: expected}
	}
	in := lincheck.Input{Kind: lincheck.Txn}
	switch p := lc.rng.IntN(100); {
	case p < 35: // a linearizable read of both, at one index
		in.Success = []lincheck.TxnOp{get(a), get(b)}
	case p < 70: // a transfer: both guarded, both written; on failure, read both
		in.Compare = []lincheck.Compare{guard(a), guard(b)}
		in.Success = []lincheck.TxnOp{put(a), put(b)}
		if lc.rng.IntN(5) == 0 {
			in.Success[1] = del(b)
		}
		in.Failure = []lincheck.TxnOp{get(a), get(b)}
	case p < 85: // create b only if absent and a still holds the value this client saw
		in.Compare = []lincheck.Compare{{Key: b, Target: lincheck.CmpExists, Exists: false}}
		if v, ok := lc.lastValue[a]; ok {
			in.Compare = append(in.Compare, lincheck.Compare{Key: a, Target: lincheck.CmpValue, Value: v})
		}
		in.Success = []lincheck.TxnOp{put(b), get(b), get(a)}
		in.Failure = []lincheck.TxnOp{get(b)}
	default: // unconditional: move a's place to b (delete a, write b, read both)
		in.Compare = []lincheck.Compare{{Key: a, Target: lincheck.CmpModIndex, NotEqual: true, Num: 0}}
		in.Success = []lincheck.TxnOp{del(a), put(b), get(a), get(b)}
		in.Failure = []lincheck.TxnOp{put(a)}
	}
	return in
}

// txnBody is the POST /v1/txn body of a lincheck transaction.
func txnBody(in lincheck.Input) []byte {
	type compare struct {
		Key    string `json:"key"`
		Target string `json:"target"`
		Op     string `json:"op"`
		Value  any    `json:"value"`
	}
	type op struct {
		Op    string  `json:"op"`
		Key   string  `json:"key"`
		Value *string `json:"value,omitempty"`
	}
	var body struct {
		Compare []compare `json:"compare,omitempty"`
		Success []op      `json:"success,omitempty"`
		Failure []op      `json:"failure,omitempty"`
	}
	for _, c := range in.Compare {
		jc := compare{Key: c.Key, Op: "="}
		if c.NotEqual {
			jc.Op = "!="
		}
		switch c.Target {
		case lincheck.CmpModIndex:
			jc.Target, jc.Value = "mod_index", c.Num
		case lincheck.CmpValue:
			jc.Target, jc.Value = "value", base64.StdEncoding.EncodeToString([]byte(c.Value))
		case lincheck.CmpExists:
			jc.Target, jc.Value = "exists", c.Exists
		}
		body.Compare = append(body.Compare, jc)
	}
	ops := func(in []lincheck.TxnOp) []op {
		var out []op
		for _, o := range in {
			jo := op{Op: o.Kind.String(), Key: o.Key}
			if o.Kind == lincheck.Put {
				v := base64.StdEncoding.EncodeToString([]byte(o.Value))
				jo.Value = &v
			}
			out = append(out, jo)
		}
		return out
	}
	body.Success, body.Failure = ops(in.Success), ops(in.Failure)
	b, err := json.Marshal(body)
	if err != nil {
		panic(err) // only strings, numbers and booleans: cannot fail
	}
	return b
}

// txnOutput decodes a 200 answer of POST /v1/txn for the lincheck transaction in.
func txnOutput(in lincheck.Input, body []byte) (lincheck.Output, error) {
	var ans struct {
		Succeeded bool   `json:"succeeded"`
		Index     uint64 `json:"index"`
		Results   []struct {
			Op          string `json:"op"`
			Found       bool   `json:"found"`
			Deleted     bool   `json:"deleted"`
			Value       []byte `json:"value"`
			ModIndex    uint64 `json:"mod_index"`
			CreateIndex uint64 `json:"create_index"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return lincheck.Output{}, fmt.Errorf("bad txn answer %q: %w", body, err)
	}
	ops := in.Success
	if !ans.Succeeded {
		ops = in.Failure
	}
	if len(ans.Results) != len(ops) {
		return lincheck.Output{}, fmt.Errorf("txn answer %q: %d results for %d ops", body, len(ans.Results), len(ops))
	}
	out := lincheck.Output{Status: lincheck.OK, Succeeded: ans.Succeeded, Index: ans.Index}
	for i, r := range ans.Results {
		if r.Op != ops[i].Kind.String() {
			return lincheck.Output{}, fmt.Errorf("txn answer %q: result %d is a %s, op is a %s", body, i, r.Op, ops[i].Kind)
		}
		out.Results = append(out.Results, lincheck.TxnResult{Found: r.Found, Value: string(r.Value),
			ModIndex: r.ModIndex, CreateIndex: r.CreateIndex, Deleted: r.Deleted})
	}
	return out, nil
}

// stepTxn sends a random transaction on keys a and b to node and records it.
func (lc *LinClient) stepTxn(node *Client, name, a, b string) StepResult {
	in := lc.randomTxn(a, b)
	call := lc.rec.Begin(lc.id, in, name)
	r := node.Do(http.MethodPost, "/v1/txn", txnBody(in))
	writes := in.Writes()
	if r.Err == nil && r.Status == http.StatusOK {
		out, err := txnOutput(in, r.Body)
		if err != nil {
			// A 200 we cannot read is a defect of the server, not a fault: the model refuses an
			// answer without an index, so the history says so.
			call.Return(lincheck.Output{Status: lincheck.OK})
			return Read
		}
		call.Return(out)
		lc.learn(in, out)
		if !writes {
			return Read
		}
		if !out.Succeeded {
			return Mismatched
		}
		return Wrote
	}
	if !writes {
		return ReadFailed // a failed read had no effect: it is not part of the history
	}
	switch r.Outcome() {
	case NoEffect:
		return WriteNoEffect
	default:
		call.Indeterminate()
		return WriteIndeterminate
	}
}

// learn remembers what a transaction's answer told about its keys.
func (lc *LinClient) learn(in lincheck.Input, out lincheck.Output) {
	ops := in.Success
	if !out.Succeeded {
		ops = in.Failure
	}
	for i, op := range ops {
		switch op.Kind {
		case lincheck.Put:
			lc.lastMod[op.Key], lc.lastValue[op.Key] = out.Index, op.Value
		case lincheck.Delete:
			lc.lastMod[op.Key] = 0
			delete(lc.lastValue, op.Key)
		case lincheck.Get:
			if r := out.Results[i]; r.Found {
				lc.lastMod[op.Key], lc.lastValue[op.Key] = r.ModIndex, r.Value
			} else {
				lc.lastMod[op.Key] = 0
				delete(lc.lastValue, op.Key)
			}
		}
	}
}
