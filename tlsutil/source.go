package tlsutil

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often a Source looks at its files for a change. Reading three small files
// every few seconds costs nothing; etcd reads them on every handshake instead, which costs a file read
// and a parse per connection.
const DefaultReloadInterval = 5 * time.Second

// Files names a certificate, its private key, and a CA bundle (PEM); any of them may be empty, but a
// certificate needs its key.
type Files struct {
	Cert, Key, CA string
}

// Source holds the current certificate and CA pool loaded from Files, and replaces them when the files
// change (Reload, Watch). A reload that fails (a key that does not match the certificate, a file half
// written) keeps what was loaded and is tried again: a rotation that writes the certificate before the
// key never leaves the node without a working pair.
type Source struct {
	files  Files
	logger *slog.Logger

	mu  sync.Mutex // serializes reloads
	cur atomic.Pointer[material]
	// reloads counts successful loads after the first (metrics and tests read it).
	reloads atomic.Uint64
}

type material struct {
	sum  [32]byte // of the files' contents: an unchanged set is not parsed again
	cert *tls.Certificate
	pool *x509.CertPool
}

// Load reads files once; any problem is an error, since a node must not start with half its TLS.
func Load(files Files, logger *slog.Logger) (*Source, error) {
	if (files.Cert == "") != (files.Key == "") {
		return nil, errors.New("a certificate file needs its key file, and a key file its certificate")
	}
	if files.Cert == "" && files.CA == "" {
		return nil, errors.New("no certificate and no CA file given")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: files, logger: logger}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Files are the files this Source reads.
func (s *Source) Files() Files { return s.files }

// Reload reads the files again and, when they changed and parse, makes them current. changed is false
// when they are the same as before; on an error the previous material stays.
func (s *Source) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, sum, err := s.read()
	if err != nil {
		return false, err
	}
	old := s.cur.Load()
	if old != nil && old.sum == sum {
		return false, nil
	}
	m := &material{sum: sum}
	if s.files.Cert != "" {
		pair, err := tls.X509KeyPair(raw[0], raw[1])
		if err != nil {
			return false, fmt.Errorf("certificate %s and key %s: %w", s.files.Cert, s.files.Key, err)
		}
		m.cert = &pair // pair.Leaf is parsed by X509KeyPair since Go 1.23
	}
	if s.files.CA != "" {
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(raw[2]) {
			return false, fmt.Errorf("CA file %s: no PEM certificate in it", s.files.CA)
		}
	}
	s.cur.Store(m)
	if old != nil {
		s.reloads.Add(1)
	}
	return true, nil
}

func (s *Source) read() (raw [3][]byte, sum [32]byte, err error) {
	h := sha256.New()
	for i, path := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if path == "" {
			continue
		}
		if raw[i], err = os.ReadFile(path); err != nil {
			return raw, sum, fmt.Errorf("read %w", err)
		}
		h.Write(raw[i])
		h.Write([]byte{0}) // file boundaries: moving bytes from one file to the next is a change
	}
	copy(sum[:], h.Sum(nil))
	return raw, sum, nil
}

// Watch reloads every interval until ctx ends, logging what changed and what failed (once per
// distinct failure, not once per poll).
func (s *Source) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := s.Reload()
		switch {
		case err != nil && err.Error() != lastErr:
			lastErr = err.Error()
			s.logger.Error("TLS files changed but cannot be loaded; still using the previous ones", "err", err)
		case err == nil && changed:
			lastErr = ""
			s.logger.Info("TLS files reloaded", "cert", s.files.Cert, "ca", s.files.CA, "expires", s.Expiry())
		}
	}
}

// Reloads is how many times the files were loaded again after the first time.
func (s *Source) Reloads() uint64 { return s.reloads.Load() }

// Certificate is the current certificate, nil when the Source has none.
func (s *Source) Certificate() *tls.Certificate { return s.cur.Load().cert }

// Pool is the current CA pool, nil when the Source has no CA file.
func (s *Source) Pool() *x509.CertPool { return s.cur.Load().pool }

// Expiry is when the current certificate expires (zero without one).
func (s *Source) Expiry() time.Time {
	if c := s.Certificate(); c != nil && c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}
