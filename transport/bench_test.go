package transport

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// The internal RPC on loopback, 64 callers at once, a 100-byte request and a 20-byte answer (a small
// forwarded write and its result): the framed protocol against the HTTP/1.1 RPC it replaced, which
// older builds still speak.
func BenchmarkRPC(b *testing.B) {
	server, err := Listen("127.0.0.1:0", "", slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	client, err := Listen("127.0.0.1:0", "", slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	answer := make([]byte, 20)
	srv := ServeRPC(server, func(context.Context, string, []byte) ([]byte, error) { return answer, nil },
		slog.New(slog.DiscardHandler))
	defer srv.Close(context.Background())
	addr := server.Addr().String()
	req := make([]byte, 100)

	run := func(b *testing.B, call func(ctx context.Context) error) {
		b.SetParallelism(32) // × GOMAXPROCS callers
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("framed", func(b *testing.B) {
		rpc := NewRPCClient(client, time.Second)
		defer rpc.Close()
		run(b, func(ctx context.Context) error {
			_, err := rpc.Call(ctx, addr, "applybatch", req)
			return err
		})
	})
	b.Run("http", func(b *testing.B) {
		rpc := newHTTPRPCClient(client, time.Second)
		defer rpc.close()
		run(b, func(ctx context.Context) error {
			_, err := rpc.call(ctx, addr, "applybatch", req)
			return err
		})
	})
}
