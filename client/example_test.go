package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/raftkv/raftkv/client"
)

// Writes are exactly-once under the Client's retries; a cas failure is a typed error.
func Example() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000", "127.0.0.1:7010", "127.0.0.1:7020"}})
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
	_, err = c.CAS(ctx, "config/color", idx, []byte("green"))
	var cas *client.CASMismatchError
	if errors.As(err, &cas) {
		fmt.Println("changed meanwhile; now at index", cas.Current)
	}
}

// A stale read from any node still reflects every write this Client has seen (min_index).
func ExampleStale() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000"}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		log.Fatal(err)
	}
	e, err := c.Get(ctx, "k", client.Stale())
	if errors.Is(err, client.ErrNotFound) {
		log.Fatal("cannot happen: the read waits for our write")
	}
	fmt.Printf("%s\n", e.Value)
}

// Paging through a prefix.
func ExampleClient_List() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000"}})
	if err != nil {
		log.Fatal(err)
	}
	opts := client.ListOptions{Prefix: "services/", Limit: 100}
	for {
		page, err := c.List(context.Background(), opts)
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range page.Entries {
			fmt.Println(e.Key)
		}
		if page.Next == "" {
			break
		}
		opts.After = page.Next
	}
}

// A transaction that moves money between two accounts only if neither changed since it read them:
// exactly once under retries, and a retry answers the first run's result.
func ExampleClient_Txn() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000"}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	a, _ := c.Get(ctx, "acct/a")
	b, _ := c.Get(ctx, "acct/b")
	res, err := c.Txn(ctx, client.Txn{
		Compare: []client.Compare{client.Unchanged("acct/a", a.ModIndex), client.Unchanged("acct/b", b.ModIndex)},
		Success: []client.TxnOp{client.OpPut("acct/a", []byte("60")), client.OpPut("acct/b", []byte("40"))},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("moved:", res.Succeeded, "at", res.Index)
}

// A prefix kept in memory, current, and read for free (the informer pattern).
func ExampleClient_NewCache() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000"}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	cache := c.NewCache("config/")
	go cache.Run(ctx)
	for {
		changed := cache.Updated()
		entries, index := cache.List()
		fmt.Println(len(entries), "keys as of index", index)
		<-changed
	}
}

// A lock with a fencing token, held as long as the session lives.
func ExampleMutex() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000"}})
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
	// Do the work, passing token to every resource it touches; stop at once when s.Done() closes.
	fmt.Println("holding the lock with token", token)
	_, _ = m.Unlock(ctx, nil)
}

// An election: campaign, and watch who leads (vacancies too).
func ExampleElection() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000"}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	go func() {
		for l := range c.Observe(ctx, "election/scheduler") {
			fmt.Printf("leader: %q (token %d)\n", l.Value, l.Token)
		}
	}()
	s, err := c.NewSession(ctx, client.SessionOptions{})
	if err != nil {
		log.Fatal(err)
	}
	e := client.NewElection(s, "election/scheduler")
	if _, err := e.Campaign(ctx, []byte("10.0.0.7:9000")); err != nil {
		log.Fatal(err)
	}
	<-s.Done() // lead until the session ends
}
