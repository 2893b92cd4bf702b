package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/raftkv/raftkv/transport"
)

// keyring.go: the gossip encryption keyring. Every node keeps its keyring in its data dir (a restart
// keeps the keys an operator installed since, as Consul's local.keyring does) and changes it when told
// over the node port; Keyring asks every live member in turn, so that a rotation is three calls:
// install the new key everywhere, use it everywhere, remove the old one everywhere.

// keyringFile holds the gossip keys, base64, the primary one first.
const keyringFile = "gossip-keyring.json"

// Keyring operations.
const (
	KeyringList    = "list"
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// KeyringResult is what the live members answered to a keyring operation.
type KeyringResult struct {
	Nodes int `json:"nodes"` // live members asked
	// Keys counts, per key (base64), the members that hold it; Primary, the members that encrypt with it.
	Keys    map[string]int `json:"keys"`
	Primary map[string]int `json:"primary"`
	// Errors are the members that failed, by node id.
	Errors map[string]string `json:"errors,omitempty"`
}

// ErrKeyringPartial: some members did not apply the operation (KeyringResult.Errors says which).
var ErrKeyringPartial = errors.New("the keyring operation failed on some members")

// loadKeyring returns the keys to start gossip with: the data dir's keyring when there is one, else
// initial (the --gossip-key), written there. A keyring file beats the flag, since it holds what
// rotations installed after the node was first started with it.
func loadKeyring(dataDir string, initial [][]byte) ([][]byte, bool, error) {
	path := filepath.Join(dataDir, keyringFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if len(initial) == 0 {
			return nil, false, nil
		}
		return initial, false, saveKeyring(dataDir, initial)
	case err != nil:
		return nil, false, fmt.Errorf("%w: read %s: %w", ErrDataDir, path, err)
	}
	var encoded []string
	if err := json.Unmarshal(b, &encoded); err != nil || len(encoded) == 0 {
		return nil, false, fmt.Errorf("%w: %s is not a list of base64 keys (remove it to start from --gossip-key): %v", ErrDataDir, path, err)
	}
	keys := make([][]byte, 0, len(encoded))
	for _, e := range encoded {
		k, err := base64.StdEncoding.DecodeString(e)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s: %w", ErrDataDir, path, err)
		}
		keys = append(keys, k)
	}
	return keys, true, nil
}

func saveKeyring(dataDir string, keys [][]byte) error {
	encoded := make([]string, len(keys))
	for i, k := range keys {
		encoded[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, _ := json.Marshal(encoded)
	path := filepath.Join(dataDir, keyringFile)
	if err := writeFileSync(path, b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// applyKeyring runs one operation on this node's keyring and persists the result.
func (s *Store) applyKeyring(op string, key []byte) error {
	s.keyringMu.Lock()
	defer s.keyringMu.Unlock()
	var err error
	switch op {
	case KeyringList:
		return nil
	case KeyringInstall:
		err = s.gossip.InstallKey(key)
	case KeyringUse:
		err = s.gossip.UseKey(key)
	case KeyringRemove:
		err = s.gossip.RemoveKey(key)
	default:
		return fmt.Errorf("%w: unknown keyring operation %q", ErrInvalid, op)
	}
	if err != nil {
		if errors.Is(err, transport.ErrNoKeyring) {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return fmt.Errorf("%w: keyring %s: %w", ErrInvalid, op, err)
	}
	if err := saveKeyring(s.cfg.DataDir, s.gossip.Keys()); err != nil {
		return fmt.Errorf("keyring %s applied but not saved (a restart would lose it): %w", op, err)
	}
	s.logger.Info("gossip keyring changed", "op", op, "keys", len(s.gossip.Keys()))
	return nil
}

// handleKeyringRPC: req is the operation's length, the operation, then the key; the answer is this
// node's keys after it, as JSON (primary first).
func (s *Store) handleKeyringRPC(req []byte) []byte {
	if len(req) < 1 || int(req[0]) > len(req)-1 {
		return encodeResponse(fmt.Errorf("%w: bad keyring request", ErrInvalid), nil)
	}
	op, key := string(req[1:1+int(req[0])]), req[1+int(req[0]):]
	if err := s.applyKeyring(op, key); err != nil {
		return encodeResponse(err, nil)
	}
	b, _ := json.Marshal(s.gossip.Keys())
	return encodeResponse(nil, b)
}

// Keyring runs a keyring operation on every live member (this one included) and reports what each
// holds afterwards. A member that fails does not stop the others: the operations are idempotent, so
// the operator repeats the call once the member is back. key is ignored by list.
func (s *Store) Keyring(ctx context.Context, op string, key []byte) (KeyringResult, error) {
	switch op {
	case KeyringList:
	case KeyringInstall, KeyringUse, KeyringRemove:
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return KeyringResult{}, fmt.Errorf("%w: a gossip key is 16, 24 or 32 bytes (base64), got %d", ErrInvalid, n)
		}
	default:
		return KeyringResult{}, fmt.Errorf("%w: unknown keyring operation %q", ErrInvalid, op)
	}
	if s.gossip.Keys() == nil {
		return KeyringResult{}, fmt.Errorf("%w: %w", ErrInvalid, transport.ErrNoKeyring)
	}
	res := KeyringResult{Keys: map[string]int{}, Primary: map[string]int{}, Errors: map[string]string{}}
	req := append(append([]byte{byte(len(op))}, op...), key...)
	members := s.gossip.Members()
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	for _, m := range members {
		if m.State != transport.StateAlive || m.RaftAddr == "" {
			continue
		}
		res.Nodes++
		var resp []byte
		var err error
		if m.ID == s.cfg.NodeID {
			resp = s.handleKeyringRPC(req)
		} else {
			addr := transport.TargetAddr(m.ID, m.RaftAddr)
			resp, err = s.rpc.Call(ctx, addr, rpcKeyring, req)
		}
		var payload []byte
		if err == nil {
			payload, err = decodeResponse(m.RaftAddr, resp)
		}
		var keys [][]byte
		if err == nil {
			err = json.Unmarshal(payload, &keys)
		}
		if err != nil {
			res.Errors[m.ID] = err.Error()
			continue
		}
		for i, k := range keys {
			e := base64.StdEncoding.EncodeToString(k)
			res.Keys[e]++
			if i == 0 {
				res.Primary[e]++
			}
		}
	}
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("%w: %d of %d", ErrKeyringPartial, len(res.Errors), res.Nodes)
	}
	return res, nil
}

func hasKey(keys [][]byte, key []byte) bool {
	for _, k := range keys {
		if string(k) == string(key) {
			return true
		}
	}
	return false
}

// GossipEncrypted reports whether this node's gossip is encrypted (it has a keyring).
func (s *Store) GossipEncrypted() bool { return s.gossip.Keys() != nil }
