// Package tlstest issues throwaway node certificates for tests that run peer mutual TLS.
package tlstest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/tlsutil"
)

// NodeCerts writes a new CA into a temp dir and returns a function that issues node id's certificate
// under it, as the Source a node loads from files (so reloading works as in production).
func NodeCerts(t testing.TB) func(id string) *tlsutil.Source {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsutil.NewCA("test", 0, time.Now())
	require.NoError(t, err)
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.Cert, 0o600))
	return func(id string) *tlsutil.Source {
		p, err := tlsutil.NewCert(ca, tlsutil.CertRequest{NodeID: id}, time.Now())
		require.NoError(t, err)
		f := tlsutil.Files{Cert: filepath.Join(dir, id+".pem"), Key: filepath.Join(dir, id+"-key.pem"), CA: caFile}
		require.NoError(t, os.WriteFile(f.Cert, p.Cert, 0o600))
		require.NoError(t, os.WriteFile(f.Key, p.Key, 0o600))
		src, err := tlsutil.Load(f, nil)
		require.NoError(t, err)
		return src
	}
}
