package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/store"
)

// Defaults of the transaction bounds.
const (
	DefaultMaxTxnOps = 128
	// DefaultMaxTxnBytes leaves room for one largest value, base64-encoded, and the JSON around it.
	DefaultMaxTxnBytes = 2 << 20
)

const codeInvalidTxn = "invalid_txn"

// txnError is a 400 invalid_txn naming the branch and op it is about.
type txnError struct {
	branch string // "compare", "success" or "failure"; "" for the whole body
	index  int
	msg    string
}

func (e *txnError) Error() string {
	if e.branch == "" {
		return "invalid transaction: " + e.msg
	}
	return "invalid transaction: " + e.branch + "[" + strconv.Itoa(e.index) + "]: " + e.msg
}

type txnRequest struct {
	Compare []txnCompare `json:"compare"`
	Success []txnOp      `json:"success"`
	Failure []txnOp      `json:"failure"`
}

type txnCompare struct {
	Key    *string         `json:"key"`
	Prefix *string         `json:"prefix"`
	Target string          `json:"target"`
	Op     string          `json:"op"`
	Value  json.RawMessage `json:"value"`
}

type txnOp struct {
	Op      string  `json:"op"`
	Key     *string `json:"key"`
	Prefix  *string `json:"prefix"`
	Value   *string `json:"value"`
	Limit   *int    `json:"limit"`
	Session *string `json:"session"` // put only: the key is owned by this session
}

// decodeTxn reads and validates a POST /v1/txn body: every key as the kv routes check it, every value
// within --max-value-size, at most MaxTxnOps compares and ops in all.
func (s *server) decodeTxn(w http.ResponseWriter, r *http.Request) (*fsm.Txn, error) {
	limit := int64(s.opts.MaxTxnBytes)
	if r.ContentLength > limit {
		return nil, &apiError{http.StatusRequestEntityTooLarge, codeValueTooLarge,
			"transaction body is over the limit of " + strconv.FormatInt(limit, 10) + " bytes"}
	}
	if r.Body == nil {
		return nil, &txnError{msg: "no body"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{http.StatusRequestEntityTooLarge, codeValueTooLarge,
				"transaction body is over the limit of " + strconv.FormatInt(limit, 10) + " bytes"}
		}
		return nil, &apiError{http.StatusBadRequest, codeInvalidBody, "reading request body: " + err.Error()}
	}
	return s.parseTxn(body)
}

// parseTxn turns a JSON transaction into an fsm.Txn, or a txnError naming what is wrong.
func (s *server) parseTxn(body []byte) (*fsm.Txn, error) {
	var req txnRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, &txnError{msg: "body is not a transaction object: " + err.Error()}
	}
	if dec.More() {
		return nil, &txnError{msg: "trailing data after the transaction object"}
	}
	if n := len(req.Compare) + len(req.Success) + len(req.Failure); n > s.opts.MaxTxnOps {
		return nil, &txnError{msg: strconv.Itoa(n) + " compares and ops, over the limit of " + strconv.Itoa(s.opts.MaxTxnOps)}
	}
	t := &fsm.Txn{}
	for i := range req.Compare {
		c, err := s.parseCompare(&req.Compare[i])
		if err != nil {
			return nil, &txnError{"compare", i, err.Error()}
		}
		t.Compare = append(t.Compare, c)
	}
	for _, br := range []struct {
		name string
		in   []txnOp
		out  *[]fsm.TxnOp
	}{{"success", req.Success, &t.Success}, {"failure", req.Failure, &t.Failure}} {
		for i := range br.in {
			op, err := s.parseTxnOp(&br.in[i])
			if err != nil {
				return nil, &txnError{br.name, i, err.Error()}
			}
			*br.out = append(*br.out, op)
		}
	}
	return t, nil
}

var compareTargets = map[string]fsm.CompareTarget{
	"mod_index": fsm.TargetModIndex, "create_index": fsm.TargetCreateIndex, "value": fsm.TargetValue,
	"exists": fsm.TargetExists, "count": fsm.TargetCount,
}

var compareOps = map[string]fsm.CompareOp{"=": fsm.CmpEqual, "!=": fsm.CmpNotEqual, "<": fsm.CmpLess, ">": fsm.CmpGreater}

func (s *server) parseCompare(in *txnCompare) (fsm.Compare, error) {
	var c fsm.Compare
	var ok bool
	if c.Target, ok = compareTargets[in.Target]; !ok {
		return c, errors.New(`target must be "mod_index", "create_index", "value", "exists" or "count", got ` + strconv.Quote(in.Target))
	}
	if c.Op, ok = compareOps[in.Op]; !ok {
		return c, errors.New(`op must be "=", "!=", "<" or ">", got ` + strconv.Quote(in.Op))
	}
	var err error
	if c.Target == fsm.TargetCount {
		if in.Key != nil || in.Prefix == nil {
			return c, errors.New(`a count compare takes "prefix", not "key"`)
		}
		c.Key, err = s.prefixText(*in.Prefix)
	} else {
		if in.Prefix != nil || in.Key == nil {
			return c, errors.New(`this compare takes "key", not "prefix"`)
		}
		c.Key, err = s.keyText(*in.Key)
	}
	if err != nil {
		return c, err
	}
	if len(in.Value) == 0 {
		return c, errors.New(`"value" is missing`)
	}
	switch c.Target {
	case fsm.TargetValue:
		var b64 string
		if err := json.Unmarshal(in.Value, &b64); err != nil {
			return c, errors.New(`a value compare's "value" is a base64 string`)
		}
		if c.Value, err = s.decodeValue(b64); err != nil {
			return c, err
		}
	case fsm.TargetExists:
		var b bool
		if err := json.Unmarshal(in.Value, &b); err != nil {
			return c, errors.New(`an exists compare's "value" is true or false`)
		}
		if b {
			c.Num = 1
		}
	default:
		if err := json.Unmarshal(in.Value, &c.Num); err != nil {
			return c, errors.New(`"value" must be an unsigned integer for target ` + in.Target)
		}
	}
	return c, nil
}

func (s *server) parseTxnOp(in *txnOp) (fsm.TxnOp, error) {
	var op fsm.TxnOp
	var err error
	switch in.Op {
	case "put":
		op.Kind = fsm.TxnPut
	case "delete":
		op.Kind = fsm.TxnDelete
	case "get":
		op.Kind = fsm.TxnGet
	case "delete_prefix":
		op.Kind = fsm.TxnDeletePrefix
	case "list":
		op.Kind = fsm.TxnList
	default:
		return op, errors.New(`op must be "put", "delete", "delete_prefix", "get" or "list", got ` + strconv.Quote(in.Op))
	}
	ranged := op.Kind == fsm.TxnDeletePrefix || op.Kind == fsm.TxnList
	switch {
	case ranged && (in.Prefix == nil || in.Key != nil):
		return op, errors.New(in.Op + ` takes "prefix", not "key"`)
	case !ranged && (in.Key == nil || in.Prefix != nil):
		return op, errors.New(in.Op + ` takes "key", not "prefix"`)
	case ranged:
		op.Key, err = s.prefixText(*in.Prefix)
	default:
		op.Key, err = s.keyText(*in.Key)
	}
	if err != nil {
		return op, err
	}
	if (in.Value != nil) != (op.Kind == fsm.TxnPut) {
		return op, errors.New(`"value" goes with put, and put needs one`)
	}
	if in.Value != nil {
		if op.Value, err = s.decodeValue(*in.Value); err != nil {
			return op, err
		}
	}
	if in.Session != nil {
		if op.Kind != fsm.TxnPut {
			return op, errors.New(`"session" goes with put only`)
		}
		if *in.Session == "" {
			return op, errors.New(`"session" is empty`)
		}
		op.Kind, op.Session = fsm.TxnPutSession, *in.Session
	}
	if in.Limit != nil {
		if op.Kind != fsm.TxnList {
			return op, errors.New(`"limit" goes with list only`)
		}
		if *in.Limit < 1 || *in.Limit > s.opts.MaxListLimit {
			return op, errors.New("limit must be from 1 to " + strconv.Itoa(s.opts.MaxListLimit))
		}
		op.Limit = uint64(*in.Limit)
	} else if op.Kind == fsm.TxnList {
		op.Limit = uint64(s.opts.DefaultListLimit)
	}
	return op, nil
}

func (s *server) keyText(k string) (string, error) {
	if k == "" {
		return "", errors.New("key is empty")
	}
	if problem := checkKeyText(k, s.opts.MaxKeySize); problem != "" {
		return "", errors.New("key " + problem)
	}
	return k, nil
}

func (s *server) prefixText(p string) (string, error) {
	if problem := checkKeyText(p, s.opts.MaxKeySize); problem != "" {
		return "", errors.New("prefix " + problem)
	}
	return p, nil
}

func (s *server) decodeValue(b64 string) ([]byte, error) {
	v, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("value is not valid base64")
	}
	if int64(len(v)) > s.opts.MaxValueSize {
		return nil, errors.New("value is " + strconv.Itoa(len(v)) + " bytes, over the limit of " + strconv.FormatInt(s.opts.MaxValueSize, 10))
	}
	return v, nil
}

// handleTxn serves POST /v1/txn?consistency=&min_index=: {"succeeded":bool,"index":N,"results":[...]}.
func (s *server) handleTxn(w http.ResponseWriter, r *http.Request) {
	c := store.Linearizable
	var minIndex uint64
	var seenConsistency, seenMinIndex bool
	err := forEachParam(r.URL.RawQuery, func(name, value string) error {
		var err error
		switch name {
		case "consistency":
			if err = once(&seenConsistency, name); err == nil {
				c, err = parseConsistency(value)
			}
		case "min_index":
			if err = once(&seenMinIndex, name); err == nil {
				minIndex, err = parseMinIndex(value)
			}
		default:
			err = unknownParam(name)
		}
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.decodeTxn(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Every compare and op of both branches, before anything runs: one forbidden op refuses it whole.
	if err := s.authorizeBody(r, txnNeeds(t)); err != nil {
		s.writeError(w, r, err)
		return
	}
	if c == store.Stale && t.HasWrites() {
		s.writeError(w, r, &txnError{msg: "consistency=stale is for transactions that only read"})
		return
	}
	// An Idempotency-Key makes a transaction that writes exactly-once like any write; one that only
	// reads writes no entry, so its key is checked but records nothing (repeating a read is harmless).
	ctx, err := writeContext(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// min_index, as on a read: a stale read-only transaction then reflects every write up to it.
	if err := s.waitIndex(r, minIndex); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, index, err := s.store.Txn(ctx, t, c)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header()[headerIndex] = []string{strconv.FormatUint(index, 10)}
	writeJSON(w, http.StatusOK, appendTxnResult(nil, res, index))
}

func appendTxnResult(b []byte, res *fsm.TxnResult, index uint64) []byte {
	b = append(b, `{"succeeded":`...)
	b = strconv.AppendBool(b, res.Succeeded)
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, `,"results":[`...)
	for i := range res.Results {
		x := &res.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = appendJSONString(b, x.Kind.String())
		switch x.Kind {
		case fsm.TxnPut:
			b = append(b, `,"index":`...)
			b = strconv.AppendUint(b, index, 10)
		case fsm.TxnDelete:
			b = append(b, `,"deleted":`...)
			b = strconv.AppendBool(b, x.Deleted > 0)
		case fsm.TxnDeletePrefix:
			b = append(b, `,"deleted":`...)
			b = strconv.AppendUint(b, x.Deleted, 10)
		case fsm.TxnGet:
			b = append(b, `,"found":`...)
			b = strconv.AppendBool(b, x.Found)
			if x.Found && len(x.Entries) == 1 {
				b = append(b, ',')
				b = appendEntryFields(b, &x.Entries[0])
			}
		case fsm.TxnList:
			b = append(b, `,"more":`...)
			b = strconv.AppendBool(b, x.More)
			b = append(b, `,"entries":[`...)
			for j := range x.Entries {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, '{')
				b = appendEntryFields(b, &x.Entries[j])
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendEntryFields(b []byte, e *store.Entry) []byte {
	b = append(b, `"key":`...)
	b = appendJSONString(b, e.Key)
	b = append(b, `,"value":"`...)
	b = base64.StdEncoding.AppendEncode(b, e.Value)
	b = append(b, `","create_index":`...)
	b = strconv.AppendUint(b, e.CreateIndex, 10)
	b = append(b, `,"mod_index":`...)
	b = strconv.AppendUint(b, e.ModIndex, 10)
	return appendLockFields(b, e)
}
