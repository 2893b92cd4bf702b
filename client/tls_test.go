package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// With Config.TLS, an endpoint without a scheme is https, verified against the configured roots.
func TestTLSConfigMakesEndpointsHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Raftkv-Index", "7")
		w.Write([]byte(`{"index":7}`))
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	hostport := strings.TrimPrefix(srv.URL, "https://")

	c, err := New(Config{Endpoints: []string{hostport}, TLS: &tls.Config{RootCAs: roots}})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)

	// Without the CA the same endpoint is refused, never silently downgraded to http.
	plain, err := New(Config{Endpoints: []string{srv.URL}, TLS: &tls.Config{}, Timeout: 1})
	require.NoError(t, err)
	defer plain.Close()
	_, err = plain.Put(context.Background(), "k", []byte("v"))
	require.Error(t, err)
}
