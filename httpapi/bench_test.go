package httpapi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/raftkv/raftkv/store"
)

// The benchmarks measure the handler, not the recorder: discardWriter reuses its header map and drops
// the body, and the store answers from a fixed entry.

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) reset()                      { clear(w.h); w.status = 0 }

// benchStore answers Get with one entry and accepts every Put without copying.
type benchStore struct {
	Store
	entry store.Entry
	index uint64
}

func (s *benchStore) Get(context.Context, string, store.Consistency) (store.Entry, error) {
	return s.entry, nil
}

func (s *benchStore) Put(context.Context, string, []byte, store.Precondition) (uint64, error) {
	s.index++
	return s.index, nil
}

func (s *benchStore) StaleInfo() store.StaleInfo {
	return store.StaleInfo{KnownLeader: true, LastContact: 12345678, WriteIndex: 123456789}
}

func benchHandler() (http.Handler, *benchStore) {
	s := &benchStore{entry: store.Entry{Key: "users/1234", Value: bytes.Repeat([]byte("v"), 256),
		CreateIndex: 1234567, ModIndex: 7654321}, index: 1_000_000}
	// Info level: request logging is off, as in production.
	return New(s, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil))), s
}

func BenchmarkGet(b *testing.B) {
	for _, target := range []string{"/v1/kv/users/1234", "/v1/kv/users/1234?consistency=stale"} {
		b.Run(target, func(b *testing.B) {
			h, _ := benchHandler()
			req := httptest.NewRequest(http.MethodGet, target, nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

func BenchmarkPut(b *testing.B) {
	for _, target := range []string{"/v1/kv/users/1234", "/v1/kv/users/1234?cas=7654321"} {
		b.Run(target, func(b *testing.B) {
			h, _ := benchHandler()
			value := bytes.Repeat([]byte("v"), 256)
			body := &rewindBody{}
			req := httptest.NewRequest(http.MethodPut, target, nil)
			req.Body, req.ContentLength = body, int64(len(value))
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			for b.Loop() {
				w.reset()
				body.Reset(value)
				h.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

// rewindBody is a reusable request body.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }
