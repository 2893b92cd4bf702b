package chaos

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/raftkv/raftkv/tlsutil"
)

// security is a cluster's transport security (issue 14): a CA with a certificate per node id, issued
// as nodes are created, a gossip key, and the client configuration the harness and the workload use.
// The files live in one directory bind-mounted read-only into every container at /certs.
type security struct {
	dir    string
	ca     tlsutil.PEM
	client *tls.Config

	mu     sync.Mutex
	issued map[string]bool
}

const certsMount = "/certs"

func newSecurity(dir string) (*security, error) {
	// The containers run as user 65532: the directory and its files must be readable by it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	ca, err := tlsutil.NewCA("chaos CA", 0, time.Now())
	if err != nil {
		return nil, err
	}
	s := &security{dir: dir, ca: ca, issued: map[string]bool{}}
	key := make([]byte, 32)
	rand.Read(key)
	if err := s.write("ca.pem", ca.Cert); err != nil {
		return nil, err
	}
	if err := s.write("gossip.key", []byte(base64.StdEncoding.EncodeToString(key))); err != nil {
		return nil, err
	}
	if err := s.issue(tlsutil.CertRequest{ClientName: "chaos"}, "chaos"); err != nil {
		return nil, err
	}
	s.client, err = tlsutil.ClientConfig(tlsutil.ClientFiles{CA: filepath.Join(dir, "ca.pem"),
		Cert: filepath.Join(dir, "chaos.pem"), Key: filepath.Join(dir, "chaos-key.pem")})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// nodeArgs are the docker run arguments (the mount) and the serve flags of node id: API TLS with client
// certificates required, peer mutual TLS, gossip encryption. The node's certificate is issued on first use.
func (s *security) nodeArgs(id string) (docker, serve []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.issued[id] {
		if err := s.issue(tlsutil.CertRequest{NodeID: id, DNS: []string{id}}, id); err != nil {
			return nil, nil, err
		}
		s.issued[id] = true
	}
	cert, key, ca := certsMount+"/"+id+".pem", certsMount+"/"+id+"-key.pem", certsMount+"/ca.pem"
	return []string{"-v", s.dir + ":" + certsMount + ":ro"}, []string{
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-client-ca-file", ca,
		"--peer-tls-cert-file", cert, "--peer-tls-key-file", key, "--peer-tls-ca-file", ca,
		"--gossip-key-file", certsMount + "/gossip.key",
	}, nil
}

func (s *security) issue(req tlsutil.CertRequest, name string) error {
	p, err := tlsutil.NewCert(s.ca, req, time.Now())
	if err != nil {
		return fmt.Errorf("certificate for %s: %w", name, err)
	}
	if err := s.write(name+"-key.pem", p.Key); err != nil {
		return err
	}
	return s.write(name+".pem", p.Cert)
}

func (s *security) write(name string, b []byte) error {
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
