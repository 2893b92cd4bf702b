package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newCA(t *testing.T) PEM {
	t.Helper()
	ca, err := NewCA("test CA", 0, time.Now())
	require.NoError(t, err)
	return ca
}

func issue(t *testing.T, ca PEM, req CertRequest) PEM {
	t.Helper()
	p, err := NewCert(ca, req, time.Now())
	require.NoError(t, err)
	return p
}

func parse(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

// writeFiles writes p (and ca) into dir atomically, as a careful operator or cert-manager does.
func writeFiles(t *testing.T, dir, name string, p PEM) Files {
	t.Helper()
	f := Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
	writeAtomic(t, f.Cert, p.Cert)
	writeAtomic(t, f.Key, p.Key)
	return f
}

func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestIssuedCertificatesNameTheirIdentityAndVerify(t *testing.T) {
	ca := newCA(t)
	caCert, _, err := ParseCA(ca)
	require.NoError(t, err)
	assert.True(t, caCert.IsCA)
	assert.True(t, caCert.MaxPathLenZero)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)

	node := parse(t, issue(t, ca, CertRequest{NodeID: "n1", IPs: []net.IP{net.ParseIP("10.0.0.5")}, DNS: []string{"rk1"}}).Cert)
	id, ok := NodeID(node)
	assert.True(t, ok)
	assert.Equal(t, "n1", id)
	_, ok = ClientName(node)
	assert.False(t, ok)
	assert.Contains(t, node.DNSNames, "rk1")
	assert.Contains(t, node.DNSNames, "localhost")
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := node.Verify(x509.VerifyOptions{Roots: roots, DNSName: "rk1", KeyUsages: []x509.ExtKeyUsage{usage}})
		assert.NoError(t, err)
	}
	_, err = node.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.0.5"})
	assert.NoError(t, err)
	assert.Less(t, time.Until(node.NotAfter), DefaultCertValidity+time.Minute)

	cl := parse(t, issue(t, ca, CertRequest{ClientName: "ops"}).Cert)
	name, ok := ClientName(cl)
	assert.True(t, ok)
	assert.Equal(t, "ops", name)
	_, ok = NodeID(cl)
	assert.False(t, ok)
	_, err = cl.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	assert.Error(t, err, "a client certificate must not serve")
}

func TestNewCertRefusesWhatCannotWork(t *testing.T) {
	ca := newCA(t)
	_, err := NewCert(ca, CertRequest{}, time.Now())
	assert.Error(t, err)
	_, err = NewCert(ca, CertRequest{NodeID: "a", ClientName: "b"}, time.Now())
	assert.Error(t, err)
	_, err = NewCert(ca, CertRequest{NodeID: "a", Validity: 10 * DefaultCAValidity}, time.Now())
	assert.ErrorContains(t, err, "outlive its CA")
	other := newCA(t)
	_, err = NewCert(PEM{Cert: ca.Cert, Key: other.Key}, CertRequest{NodeID: "a"}, time.Now())
	assert.ErrorContains(t, err, "does not belong")
}

func TestIdentityWithTwoDifferentNodesProvesNeither(t *testing.T) {
	c := &x509.Certificate{URIs: []*url.URL{NodeURI("a"), NodeURI("b")}}
	_, ok := NodeID(c)
	assert.False(t, ok)
	c.URIs = []*url.URL{NodeURI("a"), ClientURI("x")}
	id, ok := NodeID(c)
	assert.True(t, ok)
	assert.Equal(t, "a", id)
}

// peerPair runs one handshake between a node port that serves srv and a dialer with cli, meant for
// target, and returns the dialer's and the server's errors.
func peerHandshake(t *testing.T, srv, cli *Source, target string) (dialErr, acceptErr error, peerID string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type result struct {
		err error
		id  string
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, PeerServerConfig(srv))
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		done <- result{err: err, id: PeerNodeID(tc.ConnectionState())}
		if err == nil {
			io.Copy(io.Discard, tc) // until the dialer closes
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	tc := tls.Client(raw, PeerClientConfig(cli, target))
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	dialErr = tc.Handshake()
	if dialErr == nil {
		// TLS 1.3: the server's verdict on the client certificate arrives with the first read.
		_, err := tc.Write([]byte("x"))
		if err == nil {
			tc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err = tc.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = nil
			}
		}
		dialErr = err
	}
	tc.Close()
	r := <-done
	return dialErr, r.err, r.id
}

func TestPeerTLSProvesBothNodesIdentities(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	writeAtomic(t, filepath.Join(dir, "ca.pem"), ca.Cert)
	load := func(name string, p PEM, caFile string) *Source {
		f := writeFiles(t, dir, name, p)
		f.CA = caFile
		s, err := Load(f, nil)
		require.NoError(t, err)
		return s
	}
	caFile := filepath.Join(dir, "ca.pem")
	n1 := load("n1", issue(t, ca, CertRequest{NodeID: "n1"}), caFile)
	n2 := load("n2", issue(t, ca, CertRequest{NodeID: "n2"}), caFile)

	dialErr, acceptErr, peer := peerHandshake(t, n1, n2, "n1")
	require.NoError(t, dialErr)
	require.NoError(t, acceptErr)
	assert.Equal(t, "n2", peer, "the accepting node knows who dialed")

	t.Run("a node dialed as another id is refused by the dialer", func(t *testing.T) {
		dialErr, _, _ := peerHandshake(t, n1, n2, "n3")
		assert.ErrorIs(t, dialErr, ErrWrongIdentity)
	})
	t.Run("a certificate from another CA is refused both ways", func(t *testing.T) {
		other := newCA(t)
		writeAtomic(t, filepath.Join(dir, "other-ca.pem"), other.Cert)
		rogue := load("rogue", issue(t, other, CertRequest{NodeID: "n1"}), filepath.Join(dir, "other-ca.pem"))
		dialErr, acceptErr, _ := peerHandshake(t, n1, rogue, "n1")
		assert.Error(t, dialErr)
		assert.Error(t, acceptErr)
		dialErr, acceptErr, _ = peerHandshake(t, rogue, n2, "n1")
		assert.Error(t, dialErr, "n2 must not talk to a server the cluster CA did not sign")
		_ = acceptErr
	})
	t.Run("a client certificate from the cluster CA opens no node port", func(t *testing.T) {
		cl := load("ops", issue(t, ca, CertRequest{ClientName: "ops"}), caFile)
		dialErr, acceptErr, _ := peerHandshake(t, n1, cl, "n1")
		assert.Error(t, dialErr)
		assert.Error(t, acceptErr)
	})
	t.Run("a dialer without a certificate is refused", func(t *testing.T) {
		anon, err := Load(Files{CA: caFile}, nil)
		require.NoError(t, err)
		dialErr, acceptErr, _ := peerHandshake(t, n1, anon, "n1")
		assert.Error(t, dialErr)
		assert.Error(t, acceptErr)
	})
}

func TestReloadKeepsTheOldPairWhileTheNewOneIsHalfWritten(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	first := issue(t, ca, CertRequest{NodeID: "n1"})
	f := writeFiles(t, dir, "n1", first)
	src, err := Load(f, nil)
	require.NoError(t, err)
	serial := src.Certificate().Leaf.SerialNumber

	second := issue(t, ca, CertRequest{NodeID: "n1"})
	writeAtomic(t, f.Cert, second.Cert) // the key is not there yet
	_, err = src.Reload()
	require.Error(t, err)
	assert.Equal(t, serial, src.Certificate().Leaf.SerialNumber, "the working pair stays")

	writeAtomic(t, f.Key, second.Key)
	changed, err := src.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	assert.NotEqual(t, serial, src.Certificate().Leaf.SerialNumber)
	changed, err = src.Reload()
	require.NoError(t, err)
	assert.False(t, changed, "unchanged files are not parsed again")
	assert.EqualValues(t, 1, src.Reloads())
}

// TestAPICertificateRotatesUnderLoad rotates the server certificate and the client CA bundle of a live
// HTTPS server while clients keep sending requests on new and on kept-alive connections: no request
// fails, and new handshakes see the new certificate without a restart.
func TestAPICertificateRotatesUnderLoad(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	writeAtomic(t, caFile, ca.Cert)
	f := writeFiles(t, dir, "server", issue(t, ca, CertRequest{NodeID: "n1"}))
	f.CA = caFile
	src, err := Load(f, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Watch(ctx, 20*time.Millisecond)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		TLSConfig: APIServerConfig(src),
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	clientFor := func(ca PEM, name string, keepAlive bool) *http.Client {
		cf := writeFiles(t, dir, "client-"+name, issue(t, ca, CertRequest{ClientName: name}))
		cf.CA = caFile
		cfg, err := ClientConfig(ClientFiles{CA: caFile, Cert: cf.Cert, Key: cf.Key})
		require.NoError(t, err)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: !keepAlive}}
	}
	url := "https://" + ln.Addr().String() + "/"
	serverSerial := func(c *http.Client) string {
		resp, err := c.Get(url)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}

	var failures, requests atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, keep := range []bool{true, false, true, false} {
		c := clientFor(ca, "load"+string(rune('a'+i)), keep)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}

	probe := clientFor(ca, "probe", false)
	before := serverSerial(probe)
	for range 3 {
		next := issue(t, ca, CertRequest{NodeID: "n1"})
		serial := parse(t, next.Cert).SerialNumber.String()
		// Key first, then certificate: for a moment the pair does not match; the reload must wait.
		writeAtomic(t, f.Key, next.Key)
		writeAtomic(t, f.Cert, next.Cert)
		require.Eventually(t, func() bool { return serverSerial(probe) == serial }, 10*time.Second, 20*time.Millisecond)
	}
	assert.NotEqual(t, before, serverSerial(probe))

	// The client CA bundle reloads too: a client of a second CA is refused until the bundle trusts it.
	ca2 := newCA(t)
	newcomer := clientFor(ca2, "newcomer", false)
	_, err = newcomer.Get(url)
	require.Error(t, err)
	writeAtomic(t, caFile, append(append([]byte{}, ca.Cert...), ca2.Cert...))
	require.Eventually(t, func() bool {
		resp, err := newcomer.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)

	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "requests failed during rotation, first: %v", firstErr.Load())
	assert.Greater(t, requests.Load(), int64(50))
	assert.GreaterOrEqual(t, src.Reloads(), uint64(4))
}
