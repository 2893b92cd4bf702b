package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

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
