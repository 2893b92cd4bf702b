// Package discovery is service discovery on raftkv, built only on the public Go client: the seed's
// use case end to end.
//
//   - An instance registers itself under services/<service>/<id> with its address as the value, in a
//     key owned by a session that deletes its keys when it ends (Register). The client renews the
//     session; if the instance dies, the cluster deletes the key within the session's TTL (plus a
//     stated bound, see README "Sessions"), and every caller sees it go.
//   - A caller keeps the live instances of a service in memory with a client.Cache (list + watch,
//     relist on compaction), so picking an instance costs no request, and keeps working from the last
//     list it had while the raftkv cluster elects a new leader (Balancer).
//   - Requests are balanced round-robin or to the instance with the fewest outstanding requests, and
//     an idempotent request that fails is retried on another instance (Balancer.Do).
package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/client"
)

// Prefix is where services register.
const Prefix = "services/"

// Registration is one registered instance; it lasts as long as its session.
type Registration struct {
	Key     string
	session *client.Session
}

// Register writes services/<service>/<id> = addr, owned by a new session with ttl that deletes it
// when it ends.
func Register(ctx context.Context, c *client.Client, service, id, addr string, ttl time.Duration) (*Registration, error) {
	if service == "" || id == "" || strings.Contains(service, "/") || strings.Contains(id, "/") {
		return nil, fmt.Errorf("discovery: service %q and id %q must be non-empty and without '/'", service, id)
	}
	s, err := c.NewSession(ctx, client.SessionOptions{TTL: ttl, DeleteKeys: true, Name: service + "/" + id})
	if err != nil {
		return nil, err
	}
	key := Prefix + service + "/" + id
	if _, err := s.Put(ctx, key, []byte(addr)); err != nil {
		_ = s.Close(ctx)
		return nil, fmt.Errorf("discovery: register %s: %w", key, err)
	}
	return &Registration{Key: key, session: s}, nil
}

// Done is closed when the registration may have ended (its session's Done): the instance should stop
// taking traffic, or register again.
func (r *Registration) Done() <-chan struct{} { return r.session.Done() }

// Deregister removes the instance at once.
func (r *Registration) Deregister(ctx context.Context) error { return r.session.Close(ctx) }

// Abandon stops renewing, as a crash would: the cluster removes the instance after the TTL.
func (r *Registration) Abandon() { r.session.Abandon() }

// Instance is a registered instance of a service.
type Instance struct {
	ID   string
	Addr string
}

// Policy chooses among instances.
type Policy int

const (
	RoundRobin       Policy = iota
	LeastOutstanding        // the instance with the fewest requests in flight from this Balancer
)

// Balancer keeps the live instances of one service and spreads requests over them.
type Balancer struct {
	cache  *client.Cache
	prefix string
	policy Policy

	next        atomic.Uint64
	mu          sync.Mutex
	outstanding map[string]int // by instance id
}

// NewBalancer returns a Balancer for service; Run keeps its instance list current.
func NewBalancer(c *client.Client, service string, policy Policy) *Balancer {
	p := Prefix + service + "/"
	return &Balancer{cache: c.NewCache(p), prefix: p, policy: policy, outstanding: map[string]int{}}
}

// Run keeps the instance list current until ctx ends.
func (b *Balancer) Run(ctx context.Context) error { return b.cache.Run(ctx) }

// WaitSynced returns once the first list is in.
func (b *Balancer) WaitSynced(ctx context.Context) error { return b.cache.WaitSynced(ctx) }

// Updated is closed at the next change of the instance list.
func (b *Balancer) Updated() <-chan struct{} { return b.cache.Updated() }

// Instances returns the live instances, by id.
func (b *Balancer) Instances() []Instance {
	es, _ := b.cache.List()
	out := make([]Instance, 0, len(es))
	for _, e := range es {
		out = append(out, Instance{ID: strings.TrimPrefix(e.Key, b.prefix), Addr: string(e.Value)})
	}
	return out
}

// ErrNoInstance: the service has no live instance (or every one failed the request).
var ErrNoInstance = errors.New("discovery: no instance available")

// pick chooses an instance not in tried.
func (b *Balancer) pick(tried map[string]bool) (Instance, bool) {
	all := b.Instances()
	var cands []Instance
	for _, in := range all {
		if !tried[in.ID] {
			cands = append(cands, in)
		}
	}
	if len(cands) == 0 {
		return Instance{}, false
	}
	if b.policy == RoundRobin {
		if len(tried) == 0 {
			return all[b.next.Add(1)%uint64(len(all))], true
		}
		// A retry goes to a random other instance: the next one in turn would take the whole share
		// of an instance that fails, not spread it over the rest.
		return cands[rand.IntN(len(cands))], true
	}
	if b.policy == LeastOutstanding {
		b.mu.Lock()
		defer b.mu.Unlock()
		best := cands[0]
		for _, in := range cands[1:] {
			if b.outstanding[in.ID] < b.outstanding[best.ID] {
				best = in
			}
		}
		return best, true
	}
	return cands[0], true
}

// Do runs an idempotent request fn against an instance and, when it fails, against another, until
// one succeeds, every live instance has failed (ErrNoInstance wrapping the last error), or ctx ends.
// Only idempotent requests may be retried this way: a failure may come after the instance acted.
func (b *Balancer) Do(ctx context.Context, fn func(ctx context.Context, in Instance) error) error {
	tried := map[string]bool{}
	var last error
	for ctx.Err() == nil {
		in, ok := b.pick(tried)
		if !ok {
			if last == nil {
				return ErrNoInstance
			}
			return fmt.Errorf("%w: last error: %w", ErrNoInstance, last)
		}
		tried[in.ID] = true
		b.mu.Lock()
		b.outstanding[in.ID]++
		b.mu.Unlock()
		err := fn(ctx, in)
		b.mu.Lock()
		b.outstanding[in.ID]--
		b.mu.Unlock()
		if err == nil {
			return nil
		}
		last = err
	}
	return ctx.Err()
}
