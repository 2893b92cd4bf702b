package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/transport"
)

// Internal RPC methods, served on the raft port (see transport). Followers call the leader's.
const (
	rpcApplyBatch = "applybatch" // req: frames of encoded fsm.Commands; resp: frames of apply results
	rpcReadIndex  = "readindex"  // resp: a read index confirmed by a quorum
	rpcApplied    = "applied"    // resp: the callee's applied index (caught-up checks)
	rpcRemove     = "remove"     // req: member id; refused if it would lose the quorum
	// rpcRemoveForce: req: member id; removed whatever the quorum. A leader of an earlier build does not
	// know it and answers with an error, so a forced removal needs an upgraded leader.
	rpcRemoveForce = "remove-force"
	rpcHealth      = "health" // resp: the callee's term, last and applied index, last leader contact
	// rpcKeyring changes the callee's gossip keyring (store/keyring.go).
	rpcKeyring   = "keyring"
	rpcStateHash = "statehash" // req: a write index; resp: the callee's state hash there (corruptcheck.go)
	rpcDiverged  = "diverged"  // req: index, the callee's hash, the majority's: the callee diverged
)

// errNotLeader means "ask the current leader instead": the request had no effect.
var errNotLeader = errors.New("not the leader")

// errLeaderNotReady: this node leads but has not committed an entry of its own term yet.
var errLeaderNotReady = errors.New("leader not ready for reads yet")

// wireErrors maps the outcomes a caller must distinguish to one byte on the wire; index 0 is success
// and an unlisted error travels as errRemote with its message.
var wireErrors = []error{
	nil, errNotLeader, errLeaderNotReady, ErrIndeterminate, ErrTimeout, ErrShuttingDown,
	ErrUnknownMember, ErrInvalid, ErrNoLeader,
	ErrNotReady,               // appended: an older node reads an unknown code as errRemote
	ErrWouldLoseQuorum,        // appended
	ErrIdempotencyUnsupported, // appended
}

var errRemote = errors.New("leader failed the request")

const wireOther = 0xff

func encodeResponse(err error, payload []byte) []byte {
	if err == nil {
		return append([]byte{0}, payload...)
	}
	code := byte(wireOther)
	for i, e := range wireErrors[1:] {
		if errors.Is(err, e) {
			code = byte(i + 1)
			break
		}
	}
	return append([]byte{code}, err.Error()...)
}

// decodeResponse returns the payload, or the leader's error re-wrapped around the same sentinel.
func decodeResponse(addr string, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty response from %s", errRemote, addr)
	}
	code, rest := b[0], b[1:]
	switch {
	case code == 0:
		return rest, nil
	case int(code) < len(wireErrors):
		return nil, fmt.Errorf("leader %s: %s: %w", addr, rest, wireErrors[code])
	default:
		return nil, fmt.Errorf("%w %s: %s", errRemote, addr, rest)
	}
}

func encodeResult(r fsm.Result) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+1)
	b = binary.AppendUvarint(b, r.Index)
	b = binary.AppendUvarint(b, r.Current)
	var flags byte
	if r.Deleted {
		flags |= 1
	}
	if r.CASFailed {
		flags |= 2
	}
	if r.Replayed {
		flags |= 8
	}
	if r.KeyReused {
		flags |= 16
	}
	if r.OK {
		flags |= 32
	}
	if r.Refused != fsm.RefusedNone { // a refused command has no transaction result
		return append(b, flags|64, byte(r.Refused))
	}
	if r.Txn != nil {
		flags |= 4
		return r.Txn.AppendEncoded(append(b, flags))
	}
	if r.ACLErr != nil { // an ACL command has no transaction result and no refusal
		flags |= 128
		msg := r.ACLErr.Error()
		b = append(b, flags, acl.ErrorCode(r.ACLErr))
		b = binary.AppendUvarint(b, uint64(len(msg)))
		return append(b, msg...)
	}
	return append(b, flags)
}

func decodeResult(b []byte) (fsm.Result, error) {
	var r fsm.Result
	idx, n := binary.Uvarint(b)
	if n <= 0 {
		return r, errors.New("bad apply result: index")
	}
	cur, m := binary.Uvarint(b[n:])
	if m <= 0 || len(b) < n+m+1 {
		return r, errors.New("bad apply result: length")
	}
	flags := b[n+m]
	r.Index, r.Current, r.Deleted, r.CASFailed = idx, cur, flags&1 != 0, flags&2 != 0
	r.Replayed, r.KeyReused, r.OK = flags&8 != 0, flags&16 != 0, flags&32 != 0
	rest := b[n+m+1:]
	if flags&64 != 0 {
		if len(rest) != 1 || flags&4 != 0 {
			return r, errors.New("bad apply result: refusal")
		}
		r.Refused = fsm.Refusal(rest[0])
		return r, nil
	}
	if flags&4 != 0 {
		txn, err := fsm.DecodeTxnResult(rest)
		if err != nil {
			return r, fmt.Errorf("bad apply result: %w", err)
		}
		r.Txn = txn
	} else if flags&128 != 0 {
		if len(rest) < 1 {
			return r, errors.New("bad apply result: acl error")
		}
		code := rest[0]
		n, m := binary.Uvarint(rest[1:])
		if m <= 0 || uint64(len(rest)-1-m) != n {
			return r, errors.New("bad apply result: acl error")
		}
		r.ACLErr = acl.ErrorFromCode(code, string(rest[1+m:]))
	} else if len(rest) != 0 {
		return r, errors.New("bad apply result: length")
	}
	return r, nil
}

func decodeUvarint(b []byte) (uint64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, errors.New("bad uvarint payload")
	}
	return v, nil
}

func (s *Store) handleRPC(ctx context.Context, method string, req []byte) ([]byte, error) {
	switch method {
	case rpcApplyBatch:
		if !s.isLeader() {
			return encodeResponse(errNotLeader, nil), nil
		}
		results, err := s.applyBatchLocal(ctx, req)
		if err != nil {
			return encodeResponse(fmt.Errorf("%w: %v", ErrInvalid, err), nil), nil
		}
		return encodeResponse(nil, results), nil
	case rpcReadIndex:
		if !s.isLeader() {
			return encodeResponse(errNotLeader, nil), nil
		}
		idx, err := s.reads.readIndex(ctx)
		if err != nil {
			return encodeResponse(err, nil), nil
		}
		return encodeResponse(nil, binary.AppendUvarint(nil, idx)), nil
	case rpcApplied:
		applied := s.fsm.AppliedIndex()
		if s.cfg.reportApplied != nil {
			applied = s.cfg.reportApplied(applied)
		}
		return encodeResponse(nil, binary.AppendUvarint(nil, applied)), nil
	case rpcHealth:
		return encodeResponse(nil, encodeStats(s.localStats())), nil
	case rpcKeyring:
		return s.handleKeyringRPC(req), nil
	case rpcStateHash:
		x, err := decodeUvarint(req)
		if err != nil {
			return encodeResponse(fmt.Errorf("%w: %v", ErrInvalid, err), nil), nil
		}
		return encodeResponse(nil, s.stateHashAt(ctx, x)), nil
	case rpcDiverged:
		// Only the leader compares states; under mutual TLS the caller proves it is the leader, so
		// that no other member can make this one stop serving.
		if caller, ok := transport.CallerNodeID(ctx); ok {
			if _, leader := s.raft.LeaderWithID(); caller != string(leader) {
				return encodeResponse(fmt.Errorf("%w: only the leader reports divergence; %s is not the leader", ErrInvalid, caller), nil), nil
			}
		}
		return encodeResponse(s.handleDiverged(req), nil), nil
	case rpcRemove, rpcRemoveForce:
		return encodeResponse(s.removeLocal(ctx, string(req), method == rpcRemoveForce), nil), nil
	default:
		return nil, fmt.Errorf("unknown rpc method %q", method)
	}
}
