package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
)

// maxJoinBody bounds POST /v1/cluster/join: a list of addresses never needs more.
const maxJoinBody = 64 << 10

// handleStatus serves GET /v1/cluster: the node's view of the cluster as JSON (store.Status).
func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.store.Status(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b, err := json.Marshal(st)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// joinRequest is the body of POST /v1/cluster/join: {"addr": "host:port"} or {"addrs": [...]}, or both.
type joinRequest struct {
	Addr  string   `json:"addr"`
	Addrs []string `json:"addrs"`
}

// handleJoin serves POST /v1/cluster/join: ask this node to join the cluster(s) at the given addresses.
func (s *server) handleJoin(w http.ResponseWriter, r *http.Request) {
	addrs, err := decodeJoin(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.store.Join(r.Context(), addrs); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, joinedOK)
}

// decodeJoin reads and validates a join body: strict JSON (no unknown fields, nothing after the object),
// at least one address, each a host:port with a non-empty host and a numeric port.
func decodeJoin(w http.ResponseWriter, r *http.Request) ([]string, error) {
	if r.Body == nil {
		return nil, invalidRequest("request body is empty; want {\"addr\": \"host:port\"}")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJoinBody))
	dec.DisallowUnknownFields()
	var req joinRequest
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return nil, invalidRequest("request body is over " + strconv.Itoa(maxJoinBody) + " bytes")
		case errors.Is(err, io.EOF):
			return nil, invalidRequest("request body is empty; want {\"addr\": \"host:port\"}")
		}
		return nil, invalidRequest("request body is not a join request: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalidRequest("request body has data after the JSON object")
	}
	var addrs []string
	if req.Addr != "" {
		addrs = append(addrs, req.Addr)
	}
	addrs = append(addrs, req.Addrs...)
	if len(addrs) == 0 {
		return nil, invalidRequest("addr is required: {\"addr\": \"host:port\"}")
	}
	for _, a := range addrs {
		if err := checkHostPort(a); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalidRequest("address " + strconv.Quote(addr) + " is not host:port")
	}
	if host == "" || checkKeyText(host, 255) != "" {
		return invalidRequest("address " + strconv.Quote(addr) + " has no valid host")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return invalidRequest("address " + strconv.Quote(addr) + " has no valid port (1-65535)")
	}
	return nil
}

func invalidRequest(msg string) error {
	return &apiError{http.StatusBadRequest, codeInvalidRequest, msg}
}

// handleLeave serves POST /v1/cluster/leave[?force=true]: this node leaves the cluster gracefully. The
// body is ignored. Without force, a leave that would lose the quorum is refused (409 would_lose_quorum).
func (s *server) handleLeave(w http.ResponseWriter, r *http.Request) {
	force, err := forceParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.store.Leave(r.Context(), force); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, leftOK)
}

// handleRemoveMember serves DELETE /v1/cluster/members/{id}[?force=true]: an operator removes a (failed)
// member. Without force, a removal that would lose the quorum is refused (409 would_lose_quorum).
func (s *server) handleRemoveMember(w http.ResponseWriter, r *http.Request, escapedID string) {
	id, err := s.memberFromPath(escapedID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	force, err := forceParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.store.RemoveMember(r.Context(), id, force); err != nil {
		s.writeError(w, r, err)
		return
	}
	b := make([]byte, 0, len(id)+16)
	b = append(b, `{"removed":`...)
	b = appendJSONString(b, id)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

// forceParam reads ?force=, absent meaning false.
func forceParam(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("force")
	if v == "" {
		return false, nil
	}
	force, err := strconv.ParseBool(v)
	if err != nil {
		return false, &apiError{http.StatusBadRequest, codeInvalidParameter, "force must be true or false"}
	}
	return force, nil
}

func (s *server) memberFromPath(escaped string) (string, error) {
	id, err := url.PathUnescape(escaped)
	if err != nil {
		return "", invalidRequest("member id is not validly percent-encoded")
	}
	if id == "" {
		return "", invalidRequest("member id is empty")
	}
	if problem := checkKeyText(id, s.opts.MaxKeySize); problem != "" {
		return "", invalidRequest("member id " + problem)
	}
	return id, nil
}

// handleReady serves GET /readyz: 200 {"ready":true,...} when the store says it can serve, else 503
// {"ready":false,"reason":"..."}, which is also a not_ready error body (error, code) for clients that
// read every 503 as one.
func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Ready(); err != nil {
		reason := appendJSONString([]byte(`,"ready":false,"reason":`), err.Error())
		writeErrorBody(w, http.StatusServiceUnavailable, codeNotReady, err.Error(), reason)
		return
	}
	writeJSON(w, http.StatusOK, readyOK)
}

// handleHealth serves GET /v1/cluster/health: every server's health and the failure tolerance
// (store.Health). 200 when every server is healthy, 503 otherwise, with the same body, so a probe can
// use the status alone.
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h, err := s.store.Health(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b, err := json.Marshal(h)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if !h.Healthy {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, b)
}
