package discovery_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/examples/discovery"
)

// An instance registers itself; a caller balances requests over the live instances and retries an
// idempotent request on another one.
func Example() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7000", "127.0.0.1:7010", "127.0.0.1:7020"}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// In each instance of the service:
	reg, err := discovery.Register(ctx, c, "api", "host-1", "10.0.0.1:8080", 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Deregister(ctx)

	// In a caller:
	bal := discovery.NewBalancer(c, "api", discovery.LeastOutstanding)
	go bal.Run(ctx)
	_ = bal.WaitSynced(ctx)
	err = bal.Do(ctx, func(ctx context.Context, in discovery.Instance) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Addr+"/status", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err // tried again on another instance
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}
