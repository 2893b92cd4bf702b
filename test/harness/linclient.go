package harness

import (
	"fmt"
	"math/rand/v2"
	"net/http"

	"github.com/raftkv/raftkv/test/lincheck"
)

// LinClient is one client of the randomized linearizability workload, shared by the process tests
// and the chaos suite: it picks an operation (get, put, cas put, delete, cas delete; some reads and cas
// puts as transactions) on one of the given keys, or a multi-key transaction on a pair of them
// (lintxn.go), sends it to the node it is given, and records call and answer in the history. Values
// are unique per client, so a read names the write it saw.
type LinClient struct {
	id      int
	rng     *rand.Rand
	rec     *lincheck.Recorder
	lastMod map[string]uint64 // the last modify index this client saw per key (0: absent or unknown)
	// lastValue: the last value this client saw per key, for transactions' value compares.
	lastValue map[string]string
	seq       int
}

// NewLinClient makes client id of a workload recorded in rec.
func NewLinClient(id int, rng *rand.Rand, rec *lincheck.Recorder) *LinClient {
	return &LinClient{id: id, rng: rng, rec: rec, lastMod: map[string]uint64{}, lastValue: map[string]string{}}
}

// StepResult is what one step did to the history.
type StepResult int

const (
	// Read: a read answered and recorded.
	Read StepResult = iota
	// Wrote: a write applied and recorded.
	Wrote
	// Mismatched: a cas that failed its compare, recorded.
	Mismatched
	// ReadFailed: a read that did not answer; it had no effect and is left out of the history.
	ReadFailed
	// WriteNoEffect: a write that certainly changed nothing; left out of the history.
	WriteNoEffect
	// WriteIndeterminate: a write whose outcome is unknown, recorded as possibly applied.
	WriteIndeterminate
)

// Step runs one random operation on one of keys against node (named name in the history). One step
// in five is a transaction on key 2i and key 2i+1 (when the key has such a partner).
func (lc *LinClient) Step(node *Client, name string, keys []string) StepResult {
	i := lc.rng.IntN(len(keys))
	key := keys[i]
	if other := partner(keys, i); other != "" && lc.rng.IntN(5) == 0 {
		return lc.stepTxn(node, name, key, other)
	}
	lc.seq++
	value := fmt.Sprintf("c%d-%d", lc.id, lc.seq)

	var in lincheck.Input
	var send func() *Response
	switch p := lc.rng.IntN(100); {
	case p < 40:
		in = lincheck.Input{Kind: lincheck.Get, Key: key}
		send = func() *Response { return node.Get(key) }
		if lc.rng.IntN(4) == 0 { // a read-only transaction is a linearizable read too
			send = func() *Response { return node.TxnGet(key) }
		}
	case p < 65:
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value}
		send = func() *Response { return node.Put(key, []byte(value)) }
	case p < 85:
		expected := lc.lastMod[key]
		if lc.rng.IntN(5) == 0 { // now and then a guess that is most likely wrong
			expected = uint64(lc.rng.IntN(3))
		}
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value, CAS: true, Expected: expected}
		send = func() *Response { return node.CAS(key, expected, []byte(value)) }
		if lc.rng.IntN(2) == 0 { // the same cas as a transaction: its outcome must fit the same history
			send = func() *Response { return node.TxnCAS(key, expected, []byte(value)) }
		}
	default:
		if expected := lc.lastMod[key]; expected != 0 && lc.rng.IntN(2) == 0 {
			in = lincheck.Input{Kind: lincheck.Delete, Key: key, CAS: true, Expected: expected}
			send = func() *Response { return node.DeleteCAS(key, expected) }
		} else {
			in = lincheck.Input{Kind: lincheck.Delete, Key: key}
			send = func() *Response { return node.Delete(key) }
		}
	}

	call := lc.rec.Begin(lc.id, in, name)
	r := send()
	if in.Kind == lincheck.Get {
		switch {
		case r.Err == nil && r.Status == http.StatusOK:
			call.Return(lincheck.Output{Status: lincheck.OK, Found: true, Value: string(r.Body), ModIndex: r.ModIndex, CreateIndex: r.CreateIndex})
			lc.lastMod[key], lc.lastValue[key] = r.ModIndex, string(r.Body)
		case r.Err == nil && r.Status == http.StatusNotFound && r.Code == "key_not_found":
			call.Return(lincheck.Output{Status: lincheck.OK})
			lc.lastMod[key] = 0
			delete(lc.lastValue, key)
		default: // a failed read had no effect: it is not part of the history
			return ReadFailed
		}
		return Read
	}
	switch r.Outcome() {
	case Applied:
		call.Return(lincheck.Output{Status: lincheck.OK, Index: r.Index, Deleted: r.Deleted})
		lc.lastMod[key], lc.lastValue[key] = r.Index, value
		if in.Kind == lincheck.Delete {
			lc.lastMod[key] = 0
			delete(lc.lastValue, key)
		}
		return Wrote
	case CASFailed:
		call.Return(lincheck.Output{Status: lincheck.Mismatch, Current: r.CurrentIndex})
		lc.lastMod[key] = r.CurrentIndex
		return Mismatched
	case NoEffect:
		return WriteNoEffect
	default:
		call.Indeterminate()
		return WriteIndeterminate
	}
}
