package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error codes of the API (docs/design.md has the full table).
const (
	codeKeyNotFound   = "key_not_found"
	codeUnknownMember = "unknown_member"
	codeCASMismatch   = "cas_mismatch"
	codeKeyReused     = "idempotency_key_reused"
	codeIndeterminate = "indeterminate"
	codeNoLeader      = "no_leader"
	codeNotReady      = "not_ready"
	codeTimeout       = "timeout"
	codeShuttingDown  = "shutting_down"
	// codeIdempotencyUnsupported: some member (the leader) runs a build that cannot record idempotency
	// keys yet, as in a rolling upgrade; nothing was applied.
	codeIdempotencyUnsupported = "idempotency_unsupported"
)

var (
	// ErrNotFound: the key (or member) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCASMismatch: a cas precondition failed; the error is a *CASMismatchError.
	ErrCASMismatch = errors.New("cas mismatch")
	// ErrIndeterminate: a write may or may not have been applied, and retrying it within the call's
	// budget did not settle it. With the automatic idempotency key, calling again is safe only as a
	// new write (a new key): the Client cannot tell the server it is the same request any more.
	ErrIndeterminate = errors.New("write outcome unknown")
	// ErrKeyReused: the idempotency key was used for a different request (not expected from this
	// Client, which picks a fresh key per call).
	ErrKeyReused = errors.New("idempotency key reused for a different request")
	// ErrUnavailable: no node gave a definite answer within the call's budget.
	ErrUnavailable = errors.New("cluster unavailable")
)

// APIError is an error answer from a node: its status and the API's error code and message.
type APIError struct {
	Node    string // host:port that answered
	Status  int
	Code    string // empty when the body was not a raftkv error (e.g. from a proxy)
	Message string
	// CurrentIndex: on cas_mismatch, the key's modify index now (0 when absent).
	CurrentIndex uint64
	// Index is the X-Kv-Index of the answer, 0 if none: on a 404 from a read, the index at which the
	// node found the key absent.
	Index uint64
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s answered %d: %s", e.Node, e.Status, e.Message)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	return s
}

// Is maps API codes onto the package's sentinels.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == codeKeyNotFound || e.Code == codeUnknownMember
	case ErrKeyReused:
		return e.Code == codeKeyReused
	case ErrIndeterminate:
		return e.Code == codeIndeterminate
	}
	return false
}

// CASMismatchError is a failed cas precondition.
type CASMismatchError struct {
	Key     string
	Current uint64 // the key's modify index now; 0 when absent
	api     *APIError
}

func (e *CASMismatchError) Error() string {
	return fmt.Sprintf("cas mismatch on %q: current index is %d", e.Key, e.Current)
}

// Is makes errors.Is(err, ErrCASMismatch) true.
func (e *CASMismatchError) Is(target error) bool { return target == ErrCASMismatch }

// Unwrap gives the node's answer.
func (e *CASMismatchError) Unwrap() error { return e.api }

// transportError is a failure to get an answer at all. sent reports whether the request may have
// reached the node: only a failure to connect proves it did not.
type transportError struct {
	node string
	sent bool
	err  error
}

func (e *transportError) Error() string { return e.node + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// casError turns a 409 cas_mismatch into a *CASMismatchError for key.
func casError(key string, err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == codeCASMismatch {
		return &CASMismatchError{Key: key, Current: ae.CurrentIndex, api: ae}
	}
	return err
}

func decodeAPIError(node string, status int, body []byte) *APIError {
	var e struct {
		Error        string `json:"error"`
		Code         string `json:"code"`
		CurrentIndex uint64 `json:"current_index"`
	}
	ae := &APIError{Node: node, Status: status}
	if json.Unmarshal(body, &e) == nil && (e.Error != "" || e.Code != "") {
		ae.Code, ae.Message, ae.CurrentIndex = e.Code, e.Error, e.CurrentIndex
		return ae
	}
	ae.Message = strings.TrimSpace(string(body))
	if len(ae.Message) > 200 {
		ae.Message = ae.Message[:200] + "..."
	}
	if ae.Message == "" {
		ae.Message = http.StatusText(status)
	}
	return ae
}
