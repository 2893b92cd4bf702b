package main

// clients.go: the targets of the rows beyond put and get. nethttpTarget is raftkv's (and the ceiling's)
// HTTP API through Go's ordinary net/http client, so that every ratio is also shown with the client a
// user would write, not only with httptarget's lean one. txn targets turn loadgen's Put into a
// transaction: compare one key's mod_index, then put two keys (raftkv POST /v1/txn, etcd Txn).

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/bench/etcd/etcdtarget"
	"github.com/raftkv/raftkv/bench/loadgen"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errSkip: the system has no counterpart of the row (the ceiling has no transactions).
var errSkip = errors.New("not applicable")

// newHTTPClient is net/http's client as an ordinary user sets it up: one shared client with a pool
// large enough that every worker keeps its connection.
func newHTTPClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns
	tr.MaxIdleConnsPerHost = conns
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// nethttpTargets returns loadgen targets over net/http for the HTTP systems; txn turns puts into
// transactions.
func nethttpTargets(addrs []string, w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	hc := newHTTPClient(2 * w.concurrency)
	f, err := loadgen.Place(p, len(addrs), func(i int) (loadgen.Target, error) {
		t := &nethttpTarget{hc: hc, base: "http://" + addrs[i]}
		if w.stale {
			t.query = "?consistency=stale"
		}
		if w.txn {
			return &raftkvTxnTarget{t}, nil
		}
		return t, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return f, hc.CloseIdleConnections, nil
}

type nethttpTarget struct {
	hc    *http.Client
	base  string
	query string
}

func (t *nethttpTarget) Put(ctx context.Context, key string, value []byte) error {
	return t.do(ctx, http.MethodPut, t.base+"/v1/kv/"+key, value)
}

func (t *nethttpTarget) Get(ctx context.Context, key string) error {
	return t.do(ctx, http.MethodGet, t.base+"/v1/kv/"+key+t.query, nil)
}

func (t *nethttpTarget) do(ctx context.Context, method, url string, body []byte) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return statusError(resp.StatusCode)
	}
	return nil
}

// statusError is a non-200 answer; its kind is the status code.
type statusError int

func (e statusError) Error() string { return "HTTP " + strconv.Itoa(int(e)) }
func (e statusError) Kind() string  { return "HTTP " + strconv.Itoa(int(e)) }

// txnCompareBelow: a mod_index every key is below, so the compare always holds and both systems always
// take the success branch: the row measures the transaction, not the retry logic around a failed one.
const txnCompareBelow = 1 << 62

// raftkvTxnTarget: Put(key, value) is POST /v1/txn comparing key's mod_index and putting key and
// key+"/b".
type raftkvTxnTarget struct{ *nethttpTarget }

func (t *raftkvTxnTarget) Put(ctx context.Context, key string, value []byte) error {
	v := base64.StdEncoding.EncodeToString(value)
	body := fmt.Appendf(nil, `{"compare":[{"key":%q,"target":"mod_index","op":"<","value":%d}],`+
		`"success":[{"op":"put","key":%q,"value":%q},{"op":"put","key":%q,"value":%q}]}`,
		key, txnCompareBelow, key, v, key+"/b", v)
	return t.do(ctx, http.MethodPost, t.base+"/v1/txn", body)
}

// etcdTxnTargets: the same transaction through clientv3, one client per member.
func etcdTxnTargets(cl *etcdtarget.Clients, p loadgen.Placement) (loadgen.TargetFactory, error) {
	return loadgen.Place(p, nodes, func(i int) (loadgen.Target, error) {
		return &etcdTxnTarget{kv: cl.Member(i)}, nil
	})
}

type etcdTxnTarget struct {
	kv    clientv3.KV
	value string
}

func (t *etcdTxnTarget) Put(ctx context.Context, key string, value []byte) error {
	if string(value) != t.value {
		t.value = string(value)
	}
	_, err := t.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "<", txnCompareBelow)).
		Then(clientv3.OpPut(key, t.value), clientv3.OpPut(key+"/b", t.value)).
		Commit()
	if err != nil {
		return &etcdtarget.Error{Err: err}
	}
	return nil
}

func (t *etcdTxnTarget) Get(ctx context.Context, key string) error {
	_, err := t.kv.Get(ctx, key)
	if err != nil {
		return &etcdtarget.Error{Err: err}
	}
	return nil
}
