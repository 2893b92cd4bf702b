package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// aclreset.go: bootstrapping ACLs again when every management token is lost (Consul's bootstrap reset).
//
// Bootstrap answers once per cluster, and its secret exists only in that answer: an answer lost to a
// timeout leaves a cluster whose only management token nobody holds. The way back needs host access,
// never only network access: the refused bootstrap names the ACL state's reset index, the operator
// writes it into ACLResetFile in the data dir of a node, and a bootstrap request to that node then
// creates a new management token. The file is removed once used, and the index moves with the new
// token, so one file allows one reset of the state it names.

// ACLResetFile is the bootstrap reset file's name in the data dir.
const ACLResetFile = "acl-bootstrap-reset"

// ErrACLResetMismatch: the reset file names another reset index than the ACL state's.
var ErrACLResetMismatch = errors.New("the bootstrap reset file names another reset index than the ACL state's")

// ACLResetRequested reports whether this node's data dir holds a reset file for the ACL state as this
// node has applied it: false without a file, an error when the file names another index.
func (s *Store) ACLResetRequested() (bool, error) {
	path := filepath.Join(s.cfg.DataDir, ACLResetFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	want := s.ACL().Load().ResetIndex()
	got, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || got != want {
		return false, fmt.Errorf("%w: %s holds %q, the reset index is %d", ErrACLResetMismatch, path, strings.TrimSpace(string(b)), want)
	}
	return true, nil
}

// ACLResetDone removes the reset file after a reset, so that it allows no second one.
func (s *Store) ACLResetDone() error {
	path := filepath.Join(s.cfg.DataDir, ACLResetFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
