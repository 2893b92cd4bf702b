package httpapi

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/store"
)

// maxACLBody bounds the body of a token or policy request (a policy of 1,024 rules fits).
const maxACLBody = 1 << 20

// tokenView is a token as the API shows it. The secret appears only in the answer that created it.
type tokenView struct {
	acl.Token
	SecretID string `json:"secret_id,omitempty"`
	Index    uint64 `json:"index,omitempty"`
}

// tokenRequest is the body of POST /v1/acl/tokens.
type tokenRequest struct {
	Description string   `json:"description"`
	Policies    []string `json:"policies"`
	Management  bool     `json:"management"`
}

// handleACLBootstrap serves POST /v1/acl/bootstrap: the first management token, exactly once per
// cluster. The secret is made here, on the node that answers, and only its hash enters the log: the
// FSM decides which bootstrap came first, and every later one, on any node, gets 409 with the ACL
// state's reset index. With a reset file naming that index in this node's data dir (put there by
// someone with access to the host: store/aclreset.go), it creates a new management token instead.
func (s *server) handleACLBootstrap(w http.ResponseWriter, r *http.Request) {
	st := s.store.ACL().Load()
	reset := false
	if st.Bootstrapped() {
		ok, err := s.store.ACLResetRequested()
		if err != nil {
			s.writeError(w, r, &bootstrappedError{err: fmt.Errorf("%w: %w", acl.ErrBootstrapped, err), resetIndex: st.ResetIndex()})
			return
		}
		if !ok {
			s.writeError(w, r, &bootstrappedError{err: acl.ErrBootstrapped, resetIndex: st.ResetIndex()})
			return
		}
		reset = true
	}
	desc := "bootstrap management token"
	if reset {
		desc = fmt.Sprintf("bootstrap management token (reset at index %d)", st.ResetIndex())
	}
	tok, secret, err := acl.NewToken(rand.Reader, desc, nil, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cmd := acl.BootstrapCommand(tok)
	if reset {
		// A management token like any other: the cluster stays bootstrapped.
		cmd = acl.CreateTokenCommand(tok)
	}
	index, err := s.store.ApplyACL(r.Context(), cmd)
	if errors.Is(err, acl.ErrBootstrapped) {
		err = &bootstrappedError{err: err, resetIndex: s.store.ACL().Load().ResetIndex()}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if reset {
		if err := s.store.ACLResetDone(); err != nil {
			s.log.Error("ACL bootstrap reset done, but its reset file stays: remove it by hand", "err", err)
		}
	}
	tok.CreateIndex = index
	writeJSONValue(w, http.StatusOK, tokenView{Token: *tok, SecretID: secret, Index: index})
}

// bootstrappedError is a refused bootstrap, with the reset index that would allow one (409).
type bootstrappedError struct {
	err        error
	resetIndex uint64
}

func (e *bootstrappedError) Error() string {
	return fmt.Sprintf("%v (reset index %d: to bootstrap again, write it into the file %s in the data dir of the node you send the bootstrap to)",
		e.err, e.resetIndex, store.ACLResetFile)
}
func (e *bootstrappedError) Unwrap() error { return e.err }

// handleACLTokens serves GET /v1/acl/tokens (every token, without secrets) and POST (create one).
func (s *server) handleACLTokens(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		writeJSONValue(w, http.StatusOK, s.store.ACL().Load().Tokens())
		return
	}
	var req tokenRequest
	if err := decodeACLBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	tok, secret, err := acl.NewToken(rand.Reader, req.Description, req.Policies, req.Management)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	index, err := s.store.ApplyACL(r.Context(), acl.CreateTokenCommand(tok))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tok.CreateIndex = index
	writeJSONValue(w, http.StatusOK, tokenView{Token: *tok, SecretID: secret, Index: index})
}

// handleACLToken serves GET and DELETE /v1/acl/tokens/{accessor}.
func (s *server) handleACLToken(w http.ResponseWriter, r *http.Request, escaped string) {
	id, err := url.PathUnescape(escaped)
	if err != nil || id == "" {
		s.writeError(w, r, invalidRequest("accessor id is empty or not validly percent-encoded"))
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		t, ok := s.store.ACL().Load().Token(id)
		if !ok {
			s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound, "no token " + quoteForMessage(id)})
			return
		}
		writeJSONValue(w, http.StatusOK, t)
		return
	}
	index, err := s.store.ApplyACL(r.Context(), acl.DeleteTokenCommand(id))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeIndex(w, index)
}

// handleACLSelf serves GET /v1/acl/token/self: the token the request carries (without its secret).
func (s *server) handleACLSelf(w http.ResponseWriter, r *http.Request) {
	d, _ := r.Context().Value(authzKey{}).(*decision)
	if d == nil {
		s.writeError(w, r, invalidRequest("ACLs are not enabled on this node: there is no token to show"))
		return
	}
	t, ok := d.state.Token(d.authz.Accessor())
	if !ok {
		s.writeError(w, r, &apiError{http.StatusUnauthorized, codeUnauthenticated, "token deleted"})
		return
	}
	writeJSONValue(w, http.StatusOK, t)
}

// handleACLPolicies serves GET /v1/acl/policies (every policy) and POST (create or replace one).
func (s *server) handleACLPolicies(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		writeJSONValue(w, http.StatusOK, s.store.ACL().Load().Policies())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxACLBody))
	if err != nil {
		s.writeError(w, r, bodyError(err, maxACLBody))
		return
	}
	p, err := acl.ParsePolicy(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	index, err := s.store.ApplyACL(r.Context(), acl.SetPolicyCommand(p))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeIndex(w, index)
}

// handleACLPolicy serves GET and DELETE /v1/acl/policies/{name}.
func (s *server) handleACLPolicy(w http.ResponseWriter, r *http.Request, escaped string) {
	name, err := url.PathUnescape(escaped)
	if err != nil || name == "" {
		s.writeError(w, r, invalidRequest("policy name is empty or not validly percent-encoded"))
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		p, ok := s.store.ACL().Load().Policy(name)
		if !ok {
			s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound, "no policy " + quoteForMessage(name)})
			return
		}
		writeJSONValue(w, http.StatusOK, p)
		return
	}
	index, err := s.store.ApplyACL(r.Context(), acl.DeletePolicyCommand(name))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeIndex(w, index)
}

// decodeACLBody reads a small JSON body strictly.
func decodeACLBody(r *http.Request, v any) error {
	if r.Body == nil {
		return invalidBody("no body")
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxACLBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidBody("body: " + err.Error())
	}
	return nil
}

func invalidBody(msg string) error {
	return &apiError{http.StatusBadRequest, codeInvalidBody, msg}
}

// writeJSONValue encodes v; for the ACL routes, which are rare enough not to hand-encode.
func writeJSONValue(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeErrorBody(w, http.StatusInternalServerError, codeInternal, "encode: "+err.Error(), nil)
		return
	}
	writeJSON(w, status, b)
}
