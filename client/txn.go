package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Txn is a transaction: if every Compare holds, the Success ops run, else the Failure ops; either way
// atomically, at one write index, each op seeing the earlier writes of its branch.
type Txn struct {
	Compare []Compare
	Success []TxnOp
	Failure []TxnOp
}

// Compare is one condition of a Txn. Build it with the constructors below, or set the fields: Target is
// "mod_index", "create_index", "value", "exists" or "count"; Op is "=", "!=", "<" or ">".
type Compare struct {
	Target string
	Op     string
	Key    string // the key; for "count", the prefix
	Num    uint64 // the operand of mod_index, create_index and count; of exists, 1 (true) or 0
	Value  []byte // the operand of value
}

// Unchanged holds while key's modify index is still modIndex (0: while the key is absent).
func Unchanged(key string, modIndex uint64) Compare {
	return Compare{Target: "mod_index", Op: "=", Key: key, Num: modIndex}
}

// Absent holds while key does not exist.
func Absent(key string) Compare { return Compare{Target: "exists", Op: "=", Key: key, Num: 0} }

// Present holds while key exists.
func Present(key string) Compare { return Compare{Target: "exists", Op: "=", Key: key, Num: 1} }

// ValueIs holds while key exists with exactly value.
func ValueIs(key string, value []byte) Compare {
	return Compare{Target: "value", Op: "=", Key: key, Value: value}
}

// CountUnder compares the number of keys under prefix with n (op "=", "!=", "<" or ">").
func CountUnder(prefix, op string, n uint64) Compare {
	return Compare{Target: "count", Op: op, Key: prefix, Num: n}
}

// TxnOp is one op of a Txn branch; build it with OpPut, OpDelete, OpDeletePrefix, OpGet or OpList.
type TxnOp struct {
	Kind  string // "put", "delete", "delete_prefix", "get", "list"
	Key   string // the key, or the prefix of delete_prefix and list
	Value []byte // put
	Limit int    // list: most entries (0: the server's default)
}

// OpPut writes value under key.
func OpPut(key string, value []byte) TxnOp { return TxnOp{Kind: "put", Key: key, Value: value} }

// OpDelete removes key.
func OpDelete(key string) TxnOp { return TxnOp{Kind: "delete", Key: key} }

// OpDeletePrefix removes every key under prefix.
func OpDeletePrefix(prefix string) TxnOp { return TxnOp{Kind: "delete_prefix", Key: prefix} }

// OpGet reads key.
func OpGet(key string) TxnOp { return TxnOp{Kind: "get", Key: key} }

// OpList reads up to limit keys under prefix (0: the server's default page).
func OpList(prefix string, limit int) TxnOp { return TxnOp{Kind: "list", Key: prefix, Limit: limit} }

func (op TxnOp) writes() bool {
	return op.Kind == "put" || op.Kind == "delete" || op.Kind == "delete_prefix"
}

// TxnResponse is a transaction's outcome.
type TxnResponse struct {
	Succeeded bool // the compares held and Success ran
	// Index is the transaction's write index when it wrote, else the index of the view it read.
	Index   uint64
	Results []TxnResult // one per op of the branch that ran
}

// TxnResult is what one op did or found.
type TxnResult struct {
	Kind    string
	Deleted uint64  // delete: 1 if the key existed; delete_prefix: keys removed
	Found   bool    // get: the key exists (Entries[0])
	Entries []Entry // get: 0 or 1; list: the page
	More    bool    // list: keys remain past the page
}

// TxnOption changes how a transaction is served.
type TxnOption func(*txnOptions)

type txnOptions struct{ stale bool }

// StaleTxn serves a transaction that only reads from whichever node answers, without a quorum round
// (still at least at the Client's highest seen index). A transaction that writes ignores it.
func StaleTxn() TxnOption { return func(o *txnOptions) { o.stale = true } }

// Txn runs t. One that writes carries an Idempotency-Key chosen for this call, so it is retried safely
// on any node when its outcome is unknown: it applies once, and the answer is the first application's
// (same branch, same index, the same values read), even if what its compares look at has changed
// since. One that only reads is retried like any read, and carries the Client's min_index.
func (c *Client) Txn(ctx context.Context, t Txn, opts ...TxnOption) (TxnResponse, error) {
	var o txnOptions
	for _, opt := range opts {
		opt(&o)
	}
	body, err := t.encode()
	if err != nil {
		return TxnResponse{}, err
	}
	writes := false
	for _, op := range append(append([]TxnOp(nil), t.Success...), t.Failure...) {
		writes = writes || op.writes()
	}
	cl := call{method: http.MethodPost, path: "/v1/txn", body: body, ctype: "application/json"}
	if writes {
		cl.write, cl.idemKey = true, newIdempotencyKey()
	} else {
		var ro []ReadOption
		if o.stale {
			ro = append(ro, Stale())
		}
		cl.query = c.readQuery(ro)
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return TxnResponse{}, err
	}
	out, err := decodeTxnResponse(resp)
	if err != nil {
		return TxnResponse{}, err
	}
	c.observe(out.Index)
	return out, nil
}

type wireCompare struct {
	Key    *string `json:"key,omitempty"`
	Prefix *string `json:"prefix,omitempty"`
	Target string  `json:"target"`
	Op     string  `json:"op"`
	Value  any     `json:"value"`
}

type wireOp struct {
	Op     string  `json:"op"`
	Key    *string `json:"key,omitempty"`
	Prefix *string `json:"prefix,omitempty"`
	Value  *string `json:"value,omitempty"`
	Limit  *int    `json:"limit,omitempty"`
}

func (t *Txn) encode() ([]byte, error) {
	var req struct {
		Compare []wireCompare `json:"compare,omitempty"`
		Success []wireOp      `json:"success,omitempty"`
		Failure []wireOp      `json:"failure,omitempty"`
	}
	for _, cmp := range t.Compare {
		w := wireCompare{Target: cmp.Target, Op: cmp.Op}
		key := cmp.Key
		if cmp.Target == "count" {
			w.Prefix = &key
		} else {
			w.Key = &key
		}
		switch cmp.Target {
		case "value":
			w.Value = base64.StdEncoding.EncodeToString(cmp.Value)
		case "exists":
			w.Value = cmp.Num != 0
		default:
			w.Value = cmp.Num
		}
		req.Compare = append(req.Compare, w)
	}
	for _, br := range []struct {
		in  []TxnOp
		out *[]wireOp
	}{{t.Success, &req.Success}, {t.Failure, &req.Failure}} {
		for _, op := range br.in {
			w := wireOp{Op: op.Kind}
			key := op.Key
			if op.Kind == "delete_prefix" || op.Kind == "list" {
				w.Prefix = &key
			} else {
				w.Key = &key
			}
			if op.Kind == "put" {
				v := base64.StdEncoding.EncodeToString(op.Value)
				w.Value = &v
			}
			if op.Kind == "list" && op.Limit > 0 {
				limit := op.Limit
				w.Limit = &limit
			}
			*br.out = append(*br.out, w)
		}
	}
	return json.Marshal(req)
}

type wireEntry struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"` // base64 on the wire
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

func (e wireEntry) entry() Entry {
	return Entry{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex}
}

func decodeTxnResponse(resp *response) (TxnResponse, error) {
	var raw struct {
		Succeeded bool   `json:"succeeded"`
		Index     uint64 `json:"index"`
		Results   []struct {
			wireEntry
			Op      string          `json:"op"`
			Deleted json.RawMessage `json:"deleted"` // delete: a bool; delete_prefix: a count
			Found   bool            `json:"found"`
			More    bool            `json:"more"`
			Entries []wireEntry     `json:"entries"`
		} `json:"results"`
	}
	if err := decodeJSON(resp, &raw); err != nil {
		return TxnResponse{}, err
	}
	out := TxnResponse{Succeeded: raw.Succeeded, Index: raw.Index, Results: make([]TxnResult, 0, len(raw.Results))}
	for _, r := range raw.Results {
		x := TxnResult{Kind: r.Op, Found: r.Found, More: r.More}
		switch string(r.Deleted) {
		case "", "false":
		case "true":
			x.Deleted = 1
		default:
			n, err := strconv.ParseUint(string(r.Deleted), 10, 64)
			if err != nil {
				return TxnResponse{}, fmt.Errorf("client: %s: bad deleted %s in a transaction result", resp.node, r.Deleted)
			}
			x.Deleted = n
		}
		if r.Op == "get" && r.Found {
			x.Entries = []Entry{r.wireEntry.entry()}
		}
		for _, e := range r.Entries {
			x.Entries = append(x.Entries, e.entry())
		}
		out.Results = append(out.Results, x)
	}
	return out, nil
}
