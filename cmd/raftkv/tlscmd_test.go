package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/tlsutil"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTLSCommandsIssueACAAndCertificatesThatVerify(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := runCmd(t, "tls", "ca", "create", "--dir", dir)
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, "ca.pem")
	st, err := os.Stat(filepath.Join(dir, "ca-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "a private key is readable by its owner only")

	code, _, stderr = runCmd(t, "tls", "ca", "create", "--dir", dir)
	assert.Equal(t, exitUnavailable, code)
	assert.Contains(t, stderr, "already exists", "an existing CA is never overwritten")

	ca := filepath.Join(dir, "ca.pem")
	caKey := filepath.Join(dir, "ca-key.pem")
	code, _, stderr = runCmd(t, "tls", "cert", "create", "--node", "rk1", "--ip", "10.1.2.3", "--dns", "rk1,rk1.local",
		"--ca", ca, "--ca-key", caKey, "--dir", dir)
	require.Equal(t, exitOK, code, stderr)
	code, _, stderr = runCmd(t, "tls", "cert", "create", "--client", "ops", "--ca", ca, "--ca-key", caKey, "--dir", dir)
	require.Equal(t, exitOK, code, stderr)

	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca)
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	node := readCert(t, filepath.Join(dir, "rk1.pem"))
	_, err = node.Verify(x509.VerifyOptions{Roots: roots, DNSName: "rk1.local"})
	require.NoError(t, err)
	id, ok := tlsutil.NodeID(node)
	assert.True(t, ok)
	assert.Equal(t, "rk1", id)
	client := readCert(t, filepath.Join(dir, "ops.pem"))
	name, ok := tlsutil.ClientName(client)
	assert.True(t, ok)
	assert.Equal(t, "ops", name)
	_, err = tlsutil.Load(tlsutil.Files{Cert: filepath.Join(dir, "rk1.pem"), Key: filepath.Join(dir, "rk1-key.pem"), CA: ca}, nil)
	assert.NoError(t, err, "the pair loads as a node's TLS files")
}

func TestTLSCertCreateUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"neither node nor client": {"tls", "cert", "create"},
		"both":                    {"tls", "cert", "create", "--node", "a", "--client", "b"},
		"bad ip":                  {"tls", "cert", "create", "--node", "a", "--ip", "not-an-ip"},
		"path in the name":        {"tls", "cert", "create", "--node", "../a"},
		"ip on a client":          {"tls", "cert", "create", "--client", "a", "--ip", "10.0.0.1"},
		"unknown subcommand":      {"tls", "key", "create"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, _ := runCmd(t, args...)
			assert.Equal(t, exitUsage, code)
		})
	}
	code, _, stderr := runCmd(t, "tls", "cert", "create", "--node", "a", "--ca", filepath.Join(t.TempDir(), "none.pem"))
	assert.Equal(t, exitUnavailable, code)
	assert.Contains(t, stderr, "raftkv tls ca create")
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}
