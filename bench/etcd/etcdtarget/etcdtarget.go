// Package etcdtarget is etcd, through its official Go client (clientv3), as a loadgen.Target, so that
// raftkv and etcd are driven by the same load generator. It lives in the bench/etcd module so that the
// main module never depends on etcd.
//
// One clientv3.Client per member endpoint (each one gRPC connection, multiplexing every worker's calls,
// which is how etcd is meant to be used); workers are spread or pinned over the members exactly as the
// HTTP target spreads them over raftkv's nodes. A linearizable read is the default Get; a stale read is
// Get with WithSerializable (answered by the member from its own state, like raftkv's ?consistency=stale).
package etcdtarget

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"
)

// Clients holds one client per member.
type Clients struct {
	cs []*clientv3.Client
}

// Dial connects one client to each endpoint ("127.0.0.1:2379" or "http://127.0.0.1:2379").
func Dial(endpoints []string) (*Clients, error) { return DialTLS(endpoints, nil) }

// DialTLS is Dial over TLS with tc (endpoints "https://host:port"); a nil tc is plaintext.
func DialTLS(endpoints []string, tc *tls.Config) (*Clients, error) {
	c := &Clients{}
	for _, ep := range endpoints {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			TLS:         tc,
		})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("etcd client for %s: %w", ep, err)
		}
		c.cs = append(c.cs, cli)
	}
	if len(c.cs) == 0 {
		return nil, errors.New("etcdtarget: no endpoint")
	}
	return c, nil
}

// Close closes every client.
func (c *Clients) Close() {
	for _, cli := range c.cs {
		_ = cli.Close()
	}
}

// Member returns the client of member i.
func (c *Clients) Member(i int) *clientv3.Client { return c.cs[i%len(c.cs)] }

// Factory spreads or pins workers over the members (see loadgen.Place); serializable selects stale reads.
func (c *Clients) Factory(p loadgen.Placement, serializable bool) (loadgen.TargetFactory, error) {
	return loadgen.Place(p, len(c.cs), func(i int) (loadgen.Target, error) {
		t := &target{kv: c.cs[i]}
		if serializable {
			t.getOpts = []clientv3.OpOption{clientv3.WithSerializable()}
		}
		return t, nil
	})
}

// target is one worker's view of one member.
type target struct {
	kv      clientv3.KV
	getOpts []clientv3.OpOption // made once: no per-call slice
	// clientv3 takes the value as a string. The worker sends the same value every time, so the string
	// is made once per distinct value instead of per call (the comparison does not allocate).
	value string
}

func (t *target) Put(ctx context.Context, key string, value []byte) error {
	if string(value) != t.value {
		t.value = string(value)
	}
	_, err := t.kv.Put(ctx, key, t.value)
	return wrap(err)
}

func (t *target) Get(ctx context.Context, key string) error {
	_, err := t.kv.Get(ctx, key, t.getOpts...)
	return wrap(err)
}

// Error is a failed etcd call; its kind is etcd's own error text when it has one ("etcdserver: leader
// changed", a fixed set), else the gRPC code, else the transport class.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Kind() string {
	var ee rpctypes.EtcdError
	if errors.As(e.Err, &ee) {
		return fmt.Sprintf("etcd %s: %s", ee.Code(), ee.Error())
	}
	if errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded) {
		return loadgen.TransportKind(e.Err)
	}
	if s, ok := status.FromError(e.Err); ok {
		return "grpc " + s.Code().String()
	}
	return loadgen.TransportKind(e.Err)
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err}
}
