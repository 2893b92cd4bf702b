package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/store"
	"github.com/raftkv/raftkv/watch"
)

// Error codes: the stable, machine-readable half of every error body (docs/design.md has the table).
const (
	codeInvalidKey       = "invalid_key"
	codeInvalidParameter = "invalid_parameter"
	codeInvalidBody      = "invalid_body"
	codeInvalidRequest   = "invalid_request"
	codeValueTooLarge    = "value_too_large"
	codeKeyNotFound      = "key_not_found"
	codeUnknownMember    = "unknown_member"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeCASMismatch      = "cas_mismatch"
	codeKeyReused        = "idempotency_key_reused"
	codeNoLeader         = "no_leader"
	codeIndeterminate    = "indeterminate"
	codeTimeout          = "timeout"
	codeNotReady         = "not_ready"
	codeShuttingDown     = "shutting_down"
	codeInternal         = "internal"
	codeNotLeader        = "not_leader"
	codeInvalidArchive   = "invalid_archive"
	codeCompacted        = "compacted"
	codeTooManyWatches   = "too_many_watches"
	codeLagging          = "lagging"
	codeWouldLoseQuorum  = "would_lose_quorum"
	// codeIdempotencyUnsupported: a member (the leader) runs a build that cannot record the key yet.
	codeIdempotencyUnsupported = "idempotency_unsupported"
	codeUnauthenticated        = "unauthenticated"
	codePermissionDenied       = "permission_denied"
	codeBootstrapped           = "already_bootstrapped"
	codeExists                 = "already_exists"
	codeKeyringPartial         = "keyring_partial"
	codeCrossOrigin            = "cross_origin"
)

// apiError is a request httpapi rejected itself, before reaching the store. It is never wrapped.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// errorTable maps the store's sentinel errors to a status and code, checked in order with errors.Is.
// ErrIndeterminate comes first: an outcome-unknown write often also wraps a timeout or a lost leader,
// and telling the client "nothing happened" when something may have is the one mistake we must not make.
var errorTable = []struct {
	err    error
	status int
	code   string
}{
	{store.ErrIndeterminate, http.StatusServiceUnavailable, codeIndeterminate},
	{acl.ErrUnauthenticated, http.StatusUnauthorized, codeUnauthenticated},
	{acl.ErrPermissionDenied, http.StatusForbidden, codePermissionDenied},
	{acl.ErrBootstrapped, http.StatusConflict, codeBootstrapped},
	{acl.ErrExists, http.StatusConflict, codeExists},
	{acl.ErrNotFound, http.StatusNotFound, codeNotFound},
	{acl.ErrInvalid, http.StatusBadRequest, codeInvalidRequest},
	{watch.ErrCompacted, http.StatusGone, codeCompacted},
	{store.ErrCASMismatch, http.StatusConflict, codeCASMismatch},
	{store.ErrWouldLoseQuorum, http.StatusConflict, codeWouldLoseQuorum},
	{store.ErrIdempotencyKeyReused, http.StatusUnprocessableEntity, codeKeyReused},
	{store.ErrNotFound, http.StatusNotFound, codeKeyNotFound},
	{store.ErrSessionNotFound, http.StatusNotFound, codeSessionNotFound},
	{store.ErrKeyHeld, http.StatusConflict, codeKeyHeld},
	{store.ErrTooManySessions, http.StatusTooManyRequests, codeTooManySessions},
	{store.ErrUnknownMember, http.StatusNotFound, codeUnknownMember},
	{store.ErrInvalidArchive, http.StatusBadRequest, codeInvalidArchive},
	{store.ErrInvalid, http.StatusBadRequest, codeInvalidRequest},
	{store.ErrNotLeader, http.StatusMisdirectedRequest, codeNotLeader},
	{store.ErrNoLeader, http.StatusServiceUnavailable, codeNoLeader},
	{store.ErrShuttingDown, http.StatusServiceUnavailable, codeShuttingDown},
	{store.ErrIdempotencyUnsupported, http.StatusServiceUnavailable, codeIdempotencyUnsupported},
	{store.ErrNotReady, http.StatusServiceUnavailable, codeNotReady},
	{store.ErrTimeout, http.StatusServiceUnavailable, codeTimeout},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, codeTimeout},
}

// classify is the one place an error becomes a status code and an error code.
func classify(err error) (status int, code string) {
	if ae, ok := err.(*apiError); ok {
		return ae.status, ae.code
	}
	if _, ok := err.(*txnError); ok {
		return http.StatusBadRequest, codeInvalidTxn
	}
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return row.status, row.code
		}
	}
	return http.StatusInternalServerError, codeInternal
}

// writeError answers with err's status and a JSON error body. A request whose client has gone away gets
// nothing (there is no one to read it); an unexpected error is logged at error level.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "client went away",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
		return
	}
	status, code := classify(err)
	if status == http.StatusInternalServerError {
		s.log.LogAttrs(r.Context(), slog.LevelError, "internal error serving http request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	var extra []byte
	var cas *store.CASMismatchError
	if status == http.StatusConflict && errors.As(err, &cas) {
		extra = strconv.AppendUint([]byte(`,"current_index":`), cas.Current, 10)
	}
	if te, ok := err.(*txnError); ok && te.branch != "" {
		extra = appendJSONString(append(extra, `,"branch":`...), te.branch)
		extra = strconv.AppendInt(append(extra, `,"op_index":`...), int64(te.index), 10)
	}
	var boot *bootstrappedError
	if errors.As(err, &boot) {
		extra = strconv.AppendUint([]byte(`,"reset_index":`), boot.resetIndex, 10)
	}
	var compacted *watch.CompactedError
	if errors.As(err, &compacted) {
		extra = appendCompactedFields(nil, compacted)
	}
	writeErrorBody(w, status, code, err.Error(), extra)
}

// writeErrorBody writes {"error": msg, "code": code<extra>} where extra is pre-encoded `,"name":value`
// JSON members (or nil). Every 503 carries Retry-After: the condition is expected to pass.
func writeErrorBody(w http.ResponseWriter, status int, code, msg string, extra []byte) {
	b := make([]byte, 0, len(msg)+len(code)+len(extra)+32)
	b = append(b, `{"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"code":`...)
	b = appendJSONString(b, code)
	b = append(b, extra...)
	b = append(b, '}')
	if status == http.StatusServiceUnavailable {
		w.Header()["Retry-After"] = retryAfterOne
	}
	writeJSON(w, status, b)
}
