package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/acl"
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
	acl   *acl.Live
}

func (s *benchStore) GetAt(context.Context, string, store.Consistency) (store.Entry, uint64, error) {
	return s.entry, s.index, nil
}

func (s *benchStore) ACL() *acl.Live { return s.acl }

func (s *benchStore) Put(context.Context, string, []byte, store.Precondition) (uint64, error) {
	s.index++
	return s.index, nil
}

func (s *benchStore) StaleInfo() store.StaleInfo {
	return store.StaleInfo{KnownLeader: true, LastContact: 12345678, WriteIndex: 123456789}
}

func benchHandler() (http.Handler, *benchStore) {
	s := &benchStore{entry: store.Entry{Key: "users/1234", Value: bytes.Repeat([]byte("v"), 256),
		CreateIndex: 1234567, ModIndex: 7654321}, index: 1_000_000, acl: acl.NewLive()}
	// Info level: request logging is off, as in production.
	return New(s, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil))), s
}

// benchACLHandler is benchHandler with ACLs on and a token whose policy has 100 rules; it returns the
// token's secret.
func benchACLHandler(b *testing.B) (http.Handler, string) {
	_, s := benchHandler()
	p := &acl.Policy{Name: "tenants"}
	for i := range 100 {
		p.Keys = append(p.Keys, acl.KeyRule{Prefix: fmt.Sprintf("tenant%03d/", i), Access: acl.AccessWrite})
	}
	p.Keys = append(p.Keys, acl.KeyRule{Prefix: "users/", Access: acl.AccessWrite})
	st, err := acl.NewState().Apply(acl.SetPolicyCommand(p), 1)
	require.NoError(b, err)
	tok, secret, err := acl.NewToken(rand.Reader, "", []string{"tenants"}, false)
	require.NoError(b, err)
	st, err = st.Apply(acl.CreateTokenCommand(tok), 2)
	require.NoError(b, err)
	s.acl.Store(st)
	return New(s, Options{ACLEnabled: true}, slog.New(slog.NewTextHandler(io.Discard, nil))), secret
}

// BenchmarkGetWithACL is BenchmarkGet's stale case through the choke point: the difference is what an
// ACL decision costs a request (resolve the bearer token, reduce, decide, carry the decision).
func BenchmarkGetWithACL(b *testing.B) {
	h, secret := benchACLHandler(b)
	req := httptest.NewRequest(http.MethodGet, "/v1/kv/users/1234?consistency=stale", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
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

func (*benchStore) ACLResetRequested() (bool, error) { return false, nil }
func (*benchStore) ACLResetDone() error              { return nil }
