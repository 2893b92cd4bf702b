package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/store"
)

// Session routes:
//
//	POST   /v1/session               {"ttl":"15s","behavior":"release"|"delete","lock_delay":"0s","name":""}
//	PUT    /v1/session/{id}/renew    → {"id":..,"ttl":"15s","ttl_ms":15000}; 404 once it has ended
//	DELETE /v1/session/{id}          → {"index":N}
//	GET    /v1/session/{id}          → the session, with the keys it holds
//	GET    /v1/sessions              → every live session
//
// and on PUT /v1/kv/{key}: ?session=ID (the key is owned by the session), ?acquire=ID and ?release=ID
// (locks: {"index":N,"acquired":bool} / {"index":N,"released":bool}).

const (
	sessionPrefix   = "/v1/session/"
	renewSuffix     = "/renew"
	allowSession    = "GET, HEAD, DELETE"
	headerHolder    = "X-Kv-Session"    // GET /v1/kv/{key}: the session holding the key
	headerLockIndex = "X-Kv-Lock-Index" // GET /v1/kv/{key}: its lock index (fencing token)
	// maxSessionBody bounds a POST /v1/session body: a name and three short fields.
	maxSessionBody = 4 << 10
)

const codeSessionNotFound, codeKeyHeld, codeTooManySessions = "session_not_found", "key_held", "too_many_sessions"

// routeSession serves every path under /v1/session/.
func (s *server) routeSession(w http.ResponseWriter, r *http.Request, rest string) {
	if id, ok := strings.CutSuffix(rest, renewSuffix); ok && !strings.Contains(id, "/") {
		if s.allowed(w, r, http.MethodPut) {
			s.handleRenewSession(w, r, id)
		}
		return
	}
	if rest == "" || strings.Contains(rest, "/") {
		s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound, "no such endpoint: " + r.URL.Path})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.handleGetSession(w, r, rest)
	case http.MethodDelete:
		s.handleDestroySession(w, r, rest)
	default:
		s.methodNotAllowed(w, r, allowSession)
	}
}

type createSessionRequest struct {
	TTL       string `json:"ttl"`
	Behavior  string `json:"behavior"`
	LockDelay string `json:"lock_delay"`
	Name      string `json:"name"`
}

// handleCreateSession serves POST /v1/session.
func (s *server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	if err := forEachParam(r.URL.RawQuery, func(name, _ string) error { return unknownParam(name) }); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, err := writeContext(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := decodeCreateSession(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sess, err := s.store.CreateSession(ctx, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header()[headerIndex] = []string{strconv.FormatUint(sess.CreateIndex, 10)}
	writeJSON(w, http.StatusOK, appendSession(nil, &sess))
}

func decodeCreateSession(w http.ResponseWriter, r *http.Request) (store.SessionOptions, error) {
	var o store.SessionOptions
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSessionBody))
	if err != nil {
		return o, &apiError{http.StatusBadRequest, codeInvalidBody, "reading request body: " + err.Error()}
	}
	var req createSessionRequest
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			msg := "body is not a session object"
			if err != nil {
				msg += ": " + err.Error()
			}
			return o, &apiError{http.StatusBadRequest, codeInvalidBody, msg}
		}
	}
	o.Name = req.Name
	if o.TTL, err = sessionDuration("ttl", req.TTL, 15*time.Second); err != nil {
		return o, err
	}
	if o.LockDelay, err = sessionDuration("lock_delay", req.LockDelay, 0); err != nil {
		return o, err
	}
	switch req.Behavior {
	case "", "release":
		o.Behavior = fsm.BehaviorRelease
	case "delete":
		o.Behavior = fsm.BehaviorDelete
	default:
		return o, &apiError{http.StatusBadRequest, codeInvalidBody, `behavior must be "release" or "delete", got ` + strconv.Quote(req.Behavior)}
	}
	if o.TTL < store.MinSessionTTL || o.TTL > store.MaxSessionTTL {
		return o, &apiError{http.StatusBadRequest, codeInvalidBody, "ttl " + o.TTL.String() + " is outside [" +
			store.MinSessionTTL.String() + ", " + store.MaxSessionTTL.String() + "] (the minimum is twice the election timeout)"}
	}
	if o.LockDelay < 0 || o.LockDelay > store.MaxLockDelay {
		return o, &apiError{http.StatusBadRequest, codeInvalidBody, "lock_delay " + o.LockDelay.String() + " is outside [0s, " + store.MaxLockDelay.String() + "]"}
	}
	if len(o.Name) > store.MaxSessionNameLen {
		return o, &apiError{http.StatusBadRequest, codeInvalidBody, "name is over " + strconv.Itoa(store.MaxSessionNameLen) + " bytes"}
	}
	return o, nil
}

// sessionDuration parses a Go duration ("15s", "1m30s") in whole milliseconds; "" is def.
func sessionDuration(field, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d%time.Millisecond != 0 {
		return 0, &apiError{http.StatusBadRequest, codeInvalidBody, field + ` must be a duration in whole milliseconds such as "15s", got ` + strconv.Quote(v)}
	}
	return d, nil
}

// handleRenewSession serves PUT /v1/session/{id}/renew.
func (s *server) handleRenewSession(w http.ResponseWriter, r *http.Request, id string) {
	if err := forEachParam(r.URL.RawQuery, func(name, _ string) error { return unknownParam(name) }); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, err := writeContext(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ttl, err := s.store.RenewSession(ctx, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b := append([]byte(`{"id":`), appendJSONString(nil, id)...)
	b = append(appendJSONString(append(b, `,"ttl":`...), ttl.String()), `,"ttl_ms":`...)
	b = strconv.AppendInt(b, ttl.Milliseconds(), 10)
	writeJSON(w, http.StatusOK, append(b, '}'))
}

// handleDestroySession serves DELETE /v1/session/{id}.
func (s *server) handleDestroySession(w http.ResponseWriter, r *http.Request, id string) {
	if err := forEachParam(r.URL.RawQuery, func(name, _ string) error { return unknownParam(name) }); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, err := writeContext(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.opts.ACLEnabled {
		// Destroying deletes or releases every key the session holds: the caller must be allowed to
		// write each (a key it acquires meanwhile is decided when that holder acquired it).
		sess, _, err := s.store.GetSession(r.Context(), id, store.Linearizable)
		switch {
		case errors.Is(err, store.ErrSessionNotFound):
			// It holds nothing to authorize. The destroy answers 404, or, for a retry of one that
			// applied, the first attempt's outcome from its idempotency record.
		case err != nil:
			s.writeError(w, r, err)
			return
		default:
			if err := s.authorizeBody(r, keysNeeds(sess.HeldKeys, acl.AccessWrite)); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
	}
	index, err := s.store.DestroySession(ctx, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeIndex(w, index)
}

// handleGetSession serves GET /v1/session/{id}?consistency=.
func (s *server) handleGetSession(w http.ResponseWriter, r *http.Request, id string) {
	c, err := parseConsistencyOnly(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sess, index, err := s.store.GetSession(r.Context(), id, c)
	if err == nil {
		// The answer names the keys the session holds: the caller must be allowed to read each.
		if err := s.authorizeBody(r, keysNeeds(sess.HeldKeys, acl.AccessRead)); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if index != 0 {
		w.Header()[headerIndex] = []string{strconv.FormatUint(index, 10)}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appendSession(nil, &sess))
}

// handleListSessions serves GET /v1/sessions?consistency=.
func (s *server) handleListSessions(w http.ResponseWriter, r *http.Request) {
	c, err := parseConsistencyOnly(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	all, index, err := s.store.Sessions(r.Context(), c)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header()[headerIndex] = []string{strconv.FormatUint(index, 10)}
	b := []byte{'['}
	for i := range all {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSession(b, &all[i])
	}
	writeJSON(w, http.StatusOK, append(b, ']'))
}

func parseConsistencyOnly(rawQuery string) (store.Consistency, error) {
	c := store.Linearizable
	err := forEachParam(rawQuery, func(name, value string) error {
		if name != "consistency" {
			return unknownParam(name)
		}
		var err error
		c, err = parseConsistency(value)
		return err
	})
	return c, err
}

// appendSession appends a session's JSON: id, name, ttl, behavior, lock delay, indexes, and its keys
// when known (GET one).
func appendSession(b []byte, s *store.Session) []byte {
	b = appendJSONString(append(b, `{"id":`...), s.ID)
	b = appendJSONString(append(b, `,"name":`...), s.Name)
	b = appendJSONString(append(b, `,"ttl":`...), s.TTL.String())
	b = strconv.AppendInt(append(b, `,"ttl_ms":`...), s.TTL.Milliseconds(), 10)
	b = appendJSONString(append(b, `,"behavior":`...), s.Behavior.String())
	b = appendJSONString(append(b, `,"lock_delay":`...), s.LockDelay.String())
	b = strconv.AppendUint(append(b, `,"create_index":`...), s.CreateIndex, 10)
	b = strconv.AppendUint(append(b, `,"renew_index":`...), s.RenewIndex, 10)
	b = strconv.AppendInt(append(b, `,"key_count":`...), int64(s.KeyCount), 10)
	if s.HeldKeys != nil {
		b = append(b, `,"keys":[`...)
		for i, k := range s.HeldKeys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// handleSessionPut serves PUT /v1/kv/{key} with session=, acquire= or release=.
func (s *server) handleSessionPut(w http.ResponseWriter, r *http.Request, key string, value []byte, sp sessionParams) {
	ctx, err := writeContext(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var out store.LockOutcome
	switch sp.mode {
	case "session":
		out.Index, err = s.store.PutOwned(ctx, key, value, sp.id)
	case "acquire":
		out, err = s.store.Acquire(ctx, key, value, sp.id)
	case "release":
		out, err = s.store.Release(ctx, key, value, sp.id)
	default:
		err = errors.New("unknown session mode " + sp.mode)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b := make([]byte, 0, 64)
	b = append(b, `{"index":`...)
	switch sp.mode {
	case "acquire":
		// Acquired: the index is the fencing token (the key's lock index). Not: this write's index,
		// from which a watch of the key waits for its release.
		index := out.Index
		if out.OK {
			index = out.Token
		}
		b = strconv.AppendUint(b, index, 10)
		b = strconv.AppendBool(append(b, `,"acquired":`...), out.OK)
	case "release":
		b = strconv.AppendUint(b, out.Index, 10)
		b = strconv.AppendBool(append(b, `,"released":`...), out.OK)
	default:
		b = strconv.AppendUint(b, out.Index, 10)
	}
	writeJSON(w, http.StatusOK, append(b, '}'))
}

// appendLockFields appends what GET /v1/kv/{key} puts in X-Kv-Session and X-Kv-Lock-Index, for a list
// entry or a transaction's get: "session" while a session holds the key, "lock_index" once it was ever
// locked (it stays after a release). Keys never locked get neither field.
func appendLockFields(b []byte, e *store.Entry) []byte {
	if e.Lock == nil {
		return b
	}
	if h := e.Holder(); h != "" {
		b = appendJSONString(append(b, `,"session":`...), h)
	}
	if li := e.LockIndex(); li > 0 {
		b = strconv.AppendUint(append(b, `,"lock_index":`...), li, 10)
	}
	return b
}
