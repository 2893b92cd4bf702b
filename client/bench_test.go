package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The client's own cost per call against plain net/http, on a loopback server that answers at once
// (no store behind it): what Get and Put add — headers, min_index, the idempotency key, error
// decoding, index tracking — over the bare request. `go test -bench . ./client`.

func benchServer(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPut {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"index":42}`))
			return
		}
		w.Header().Set("X-Kv-Index", "42")
		w.Header().Set("X-Kv-Mod-Index", "41")
		w.Header().Set("X-Kv-Create-Index", "40")
		_, _ = w.Write([]byte("value-of-100-bytes-0123456789012345678901234567890123456789012345678901234567890123456789012345"))
	}))
	b.Cleanup(srv.Close)
	return srv
}

func BenchmarkGetRawHTTP(b *testing.B) {
	srv := benchServer(b)
	hc := newHTTPClient(DefaultDialTimeout, nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := hc.Get(srv.URL + "/v1/kv/bench/key?consistency=stale")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkGetClient(b *testing.B) {
	srv := benchServer(b)
	c, err := New(Config{Endpoints: []string{srv.URL}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "bench/key", Stale()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutRawHTTP(b *testing.B) {
	srv := benchServer(b)
	hc := newHTTPClient(DefaultDialTimeout, nil)
	value := bytes.Repeat([]byte("v"), 100)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/kv/bench/key", bytes.NewReader(value))
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkPutClient(b *testing.B) {
	srv := benchServer(b)
	c, err := New(Config{Endpoints: []string{srv.URL}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	value := bytes.Repeat([]byte("v"), 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Put(ctx, "bench/key", value); err != nil {
			b.Fatal(err)
		}
	}
}
