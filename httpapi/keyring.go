package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/raftkv/raftkv/store"
)

// Keyring is the gossip keyring of the cluster (store.Store.Keyring): an operation on every live member.
type Keyring interface {
	Keyring(ctx context.Context, op string, key []byte) (store.KeyringResult, error)
}

// maxKeyringBody: {"op": "install", "key": "<44 base64 characters>"} with room to spare.
const maxKeyringBody = 1 << 10

type keyringRequest struct {
	Op  string `json:"op"`
	Key string `json:"key"`
}

// handleKeyring serves GET /v1/operator/keyring (list) and POST /v1/operator/keyring
// {"op": "install"|"use"|"remove", "key": base64}. The answer counts, per key, the members that hold it
// and that encrypt with it. A partial failure answers 500 keyring_partial with the same body plus the
// errors by member: repeating the call is safe.
func (s *server) handleKeyring(w http.ResponseWriter, r *http.Request) {
	op, key := store.KeyringList, []byte(nil)
	if r.Method == http.MethodPost {
		if r.Body == nil {
			s.writeError(w, r, invalidRequest(`request body is empty; want {"op": "install|use|remove", "key": "base64"}`))
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxKeyringBody))
		dec.DisallowUnknownFields()
		var req keyringRequest
		if err := dec.Decode(&req); err != nil {
			s.writeError(w, r, invalidRequest("keyring request: "+err.Error()))
			return
		}
		if req.Op != store.KeyringInstall && req.Op != store.KeyringUse && req.Op != store.KeyringRemove {
			s.writeError(w, r, invalidRequest(`"op" must be install, use or remove`))
			return
		}
		k, err := base64.StdEncoding.DecodeString(req.Key)
		if err != nil {
			s.writeError(w, r, invalidRequest(`"key" is not base64: `+err.Error()))
			return
		}
		op, key = req.Op, k
	}
	res, err := s.opts.Keyring.Keyring(r.Context(), op, key)
	if err != nil && !errors.Is(err, store.ErrKeyringPartial) {
		s.writeError(w, r, err)
		return
	}
	body := struct {
		store.KeyringResult
		Error string `json:"error,omitempty"`
		Code  string `json:"code,omitempty"`
	}{KeyringResult: res}
	status := http.StatusOK
	if err != nil {
		status, body.Code, body.Error = http.StatusInternalServerError, codeKeyringPartial, err.Error()
	}
	b, _ := json.Marshal(body)
	writeJSON(w, status, b)
}
