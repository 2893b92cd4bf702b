package test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
	"github.com/raftkv/raftkv/tlsutil"
)

// servedSerial is the serial number of the certificate node serves on a new connection.
func servedSerial(t *testing.T, n *harness.Node, cfg *tls.Config) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(n.BaseURL + "/healthz")
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber.String()
}

// The client API over TLS with client certificates required: plain HTTP and clients without a
// certificate from the CA get nothing; the CLI speaks it with --cacert/--cert/--key; and the nodes'
// certificates are replaced under a steady write load, picked up on SIGHUP without a restart and
// without one failed request.
func TestAPIOverTLSRotatesCertificatesUnderLoadOnSIGHUP(t *testing.T) {
	pki := harness.NewPKI(t, "n1", "n2", "n3")
	c := harness.StartCluster(t, 3, harness.Options{
		LogLevel:  "info",
		ClientTLS: pki.ClientTLS(),
		// An hour: the reload in this test is the SIGHUP's, not the poll's (tlsutil tests the poll).
		NodeArgs: func(id string) []string { return append(pki.APIArgs(id, true), "--tls-reload-interval", "1h") },
	})
	n1 := c.Node(0)

	plain := harness.NewClient(n1.HTTPAddr, 5*time.Second)
	r := plain.Put("k", []byte("v"))
	assert.False(t, r.OK(), "plain HTTP to a TLS port must not write: %s", r)

	noCert := harness.NewClient(n1.HTTPAddr, 5*time.Second)
	noCert.UseTLS(&tls.Config{RootCAs: pki.ClientTLS().RootCAs})
	r = noCert.Put("k", []byte("v"))
	assert.Error(t, r.Err, "a client without a certificate from the CA must be refused")

	_, stderr, code := harness.RunCLI(t, append([]string{"put", "--addr", n1.HTTPAddr, "tls-key", "hello"}, pki.CLIArgs()...)...)
	require.Equal(t, 0, code, stderr)
	out, stderr, code := harness.RunCLI(t, append([]string{"get", "--addr", n1.HTTPAddr, "tls-key"}, pki.CLIArgs()...)...)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "hello", out)

	// Load: writers on kept-alive connections and on a new connection per request, to every node.
	var failures, writes atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		n := c.Node(w % 3)
		cl := harness.NewClient(n.HTTPAddr, 5*time.Second)
		cl.UseTLS(pki.ClientTLS())
		if w >= 2 {
			cl.HTTP.Transport.(*http.Transport).DisableKeepAlives = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := cl.Put(fmt.Sprintf("load/%d/%d", w, i), []byte("x"))
				writes.Add(1)
				if !r.OK() {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, r.String())
				}
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	pids := []int{c.PID(0), c.PID(1), c.PID(2)}
	for i := range 3 {
		n := c.Node(i)
		before := servedSerial(t, n, pki.ClientTLS())
		cert, _ := pki.Issue(tlsutil.CertRequest{NodeID: n.ID})
		want := readSerial(t, cert)
		require.NotEqual(t, before, want)
		assert.Equal(t, before, servedSerial(t, n, pki.ClientTLS()), "nothing changes before the SIGHUP (the poll is an hour)")
		require.NoError(t, syscall.Kill(c.PID(i), syscall.SIGHUP))
		require.Eventually(t, func() bool { return servedSerial(t, n, pki.ClientTLS()) == want },
			20*time.Second, 50*time.Millisecond, "%s still serves its old certificate after SIGHUP", n.ID)
	}
	require.Eventually(t, func() bool { return writes.Load() > 100 }, 30*time.Second, 50*time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "writes failed while certificates rotated; first: %v", firstErr.Load())
	for i := range 3 {
		assert.Equal(t, pids[i], c.PID(i), "no node restarted")
	}
}

func readSerial(t *testing.T, certFile string) string {
	t.Helper()
	src, err := tlsutil.Load(tlsutil.Files{Cert: certFile, Key: certFile[:len(certFile)-len(".pem")] + "-key.pem"}, nil)
	require.NoError(t, err)
	return src.Certificate().Leaf.SerialNumber.String()
}
