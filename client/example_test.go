package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/raftkv/raftkv/client"
)

// The examples run against a one-node cluster the tests start (node, example_node_test.go); a real
// Client lists every node of the cluster, e.g. []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}.

// Writes are exactly-once under the Client's retries; a cas failure is a typed error.
func Example() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	idx, err := c.Put(ctx, "config/color", []byte("blue"))
	if err != nil {
		log.Fatal(err) // errors.Is(err, client.ErrIndeterminate): still unknown after every retry
	}
	// Only if nobody changed it since our write.
	if _, err := c.CAS(ctx, "config/color", idx, []byte("green")); err != nil {
		log.Fatal(err)
	}
	_, err = c.CAS(ctx, "config/color", idx, []byte("red")) // idx is stale now
	var cas *client.CASMismatchError
	if errors.As(err, &cas) {
		fmt.Println("red refused: changed since our write:", cas.Current > idx)
	}
	e, _ := c.Get(ctx, "config/color")
	fmt.Printf("%s\n", e.Value)
	_, err = c.Get(ctx, "config/size")
	fmt.Println("size not found:", errors.Is(err, client.ErrNotFound))
	// Output:
	// red refused: changed since our write: true
	// green
	// size not found: true
}

// A stale read from any node (no quorum round) still reflects every write this Client has seen: it
// carries the Client's highest seen index as min_index, and the node waits until it has applied it.
func ExampleStale() {
	c, err := client.New(client.Config{Endpoints: []string{node}, RoundRobin: true})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		log.Fatal(err)
	}
	e, err := c.Get(ctx, "k", client.Stale())
	if err != nil {
		log.Fatal(err) // never ErrNotFound: the read waits for our write
	}
	fmt.Printf("%s, read at or after our write: %t\n", e.Value, e.Index >= e.ModIndex)
	// Output: v, read at or after our write: true
}

// Paging through a prefix.
func ExampleClient_List() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"fruit/apple", "fruit/banana", "fruit/cherry"} {
		if _, err := c.Put(ctx, k, []byte("1")); err != nil {
			log.Fatal(err)
		}
	}
	opts := client.ListOptions{Prefix: "fruit/", Limit: 2}
	for {
		page, err := c.List(ctx, opts)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("page:", len(page.Entries), "keys")
		for _, e := range page.Entries {
			fmt.Println(e.Key)
		}
		if page.Next == "" {
			break
		}
		opts.After = page.Next
	}
	// Output:
	// page: 2 keys
	// fruit/apple
	// fruit/banana
	// page: 1 keys
	// fruit/cherry
}

// A transaction that moves money between two accounts only if neither changed since it read them:
// exactly once under retries, and a retry answers the first run's result.
func ExampleClient_Txn() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	_, _ = c.Put(ctx, "acct/a", []byte("100"))
	_, _ = c.Put(ctx, "acct/b", []byte("0"))
	a, _ := c.Get(ctx, "acct/a")
	b, _ := c.Get(ctx, "acct/b")
	res, err := c.Txn(ctx, client.Txn{
		Compare: []client.Compare{client.Unchanged("acct/a", a.ModIndex), client.Unchanged("acct/b", b.ModIndex)},
		Success: []client.TxnOp{client.OpPut("acct/a", []byte("60")), client.OpPut("acct/b", []byte("40"))},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("moved:", res.Succeeded)
	// A read-only transaction: both accounts at one index.
	res, err = c.Txn(ctx, client.Txn{Success: []client.TxnOp{client.OpGet("acct/a"), client.OpGet("acct/b")}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("a=%s b=%s\n", res.Results[0].Entries[0].Value, res.Results[1].Entries[0].Value)
	// Output:
	// moved: true
	// a=60 b=40
}

// Watching a prefix: list, then watch from the list's index + 1, so that nothing is missed or seen
// twice. The Watcher resumes on another node when a stream ends; ErrCompacted means the history no
// longer reaches back: list again.
func ExampleClient_Watch() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := c.List(ctx, client.ListOptions{Prefix: "jobs/"})
	if err != nil {
		log.Fatal(err)
	}
	w := c.Watch(client.WatchOptions{Prefix: "jobs/", Index: page.Index + 1})
	defer w.Close()
	go func() {
		_, _ = c.Put(ctx, "jobs/1", []byte("queued"))
		_, _, _ = c.Delete(ctx, "jobs/1")
	}()
	for range 2 {
		ev, err := w.Next(ctx)
		if errors.Is(err, client.ErrCompacted) {
			log.Fatal("relist, then watch from the new list's index + 1")
		} else if err != nil {
			log.Fatal(err)
		}
		for _, ch := range ev.Changes {
			fmt.Println(ch.Type, ch.Key, string(ch.Value))
		}
	}
	// Output:
	// put jobs/1 queued
	// delete jobs/1
}

// A prefix kept in memory, current, and read for free (the informer pattern).
func ExampleClient_NewCache() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := c.NewCache("flags/")
	go cache.Run(ctx)
	if err := cache.WaitSynced(ctx); err != nil {
		log.Fatal(err)
	}
	changed := cache.Updated() // take it before the change it should report
	idx, err := c.Put(ctx, "flags/dark-mode", []byte("on"))
	if err != nil {
		log.Fatal(err)
	}
	<-changed
	if err := cache.WaitIndex(ctx, idx); err != nil { // our write is in
		log.Fatal(err)
	}
	e, _ := cache.Get("flags/dark-mode")
	fmt.Printf("dark-mode=%s\n", e.Value)
	// Output: dark-mode=on
}

// A session keeps ephemeral keys alive; Done closes when it ends (or may have), so work that needs it
// stops in time.
func ExampleSession() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	s, err := c.NewSession(ctx, client.SessionOptions{TTL: 5 * time.Second, DeleteKeys: true})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.Put(ctx, "services/api/i-1", []byte("10.0.0.7:8080")); err != nil {
		log.Fatal(err)
	}
	select {
	case <-s.Done():
		log.Fatal("ended early:", s.Err())
	default:
		fmt.Println("registered")
	}
	if err := s.Close(ctx); err != nil { // the ephemeral key goes with it
		log.Fatal(err)
	}
	<-s.Done()
	fmt.Println("ended:", errors.Is(s.Err(), client.ErrSessionEnded))
	_, err = c.Get(ctx, "services/api/i-1")
	fmt.Println("key gone:", errors.Is(err, client.ErrNotFound))
	// Output:
	// registered
	// ended: true
	// key gone: true
}

// A lock with a fencing token, held as long as the session lives.
func ExampleMutex() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	s, err := c.NewSession(ctx, client.SessionOptions{TTL: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(ctx)
	m := client.NewMutex(s, "locks/report")
	token, err := m.Lock(ctx, []byte("worker-1"))
	if err != nil {
		log.Fatal(err)
	}
	// Do the work, passing token to every resource it touches (a txn compare, say: a holder that lost
	// the lock has a lower token); stop at once when s.Done() closes.
	fmt.Println("holding the lock, token > 0:", token > 0)
	released, err := m.Unlock(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("released:", released)
	// Output:
	// holding the lock, token > 0: true
	// released: true
}

// An election: campaign, resign, and observe who leads (vacancies too).
func ExampleElection() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leaders := c.Observe(ctx, "election/scheduler")
	show := func(l client.Leadership) {
		if l.Session == "" {
			fmt.Println("no leader")
		} else {
			fmt.Printf("leader: %s\n", l.Value)
		}
	}
	show(<-leaders)

	s, err := c.NewSession(ctx, client.SessionOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	e := client.NewElection(s, "election/scheduler")
	if _, err := e.Campaign(ctx, []byte("10.0.0.7:9000")); err != nil {
		log.Fatal(err)
	}
	show(<-leaders)
	if err := e.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	show(<-leaders)
	// Output:
	// no leader
	// leader: 10.0.0.7:9000
	// no leader
}

// The cluster as one node sees it.
func ExampleClient_Status() {
	c, err := client.New(client.Config{Endpoints: []string{node}})
	if err != nil {
		log.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("members:", len(st.Members), "leader:", st.Leader.ID)
	// Output: members: 1 leader: n1
}

// A Client for a cluster with TLS and ACLs: verify the nodes with the cluster's CA, present a client
// certificate if the nodes ask for one, and send a token. (Not run: the examples' node has neither.)
func ExampleConfig() {
	caPEM, err := os.ReadFile("ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair("client.pem", "client-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{
		Endpoints: []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"},
		TLS:       &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}},
		Token:     os.Getenv("RAFTKV_TOKEN"),
		Timeout:   10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
