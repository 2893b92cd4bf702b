package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/store"
)

// The fake's sessions: enough semantics to check the HTTP translation (the FSM's tests check the rest).

func (f *fakeStore) CreateSession(ctx context.Context, o store.SessionOptions) (store.Session, error) {
	f.noteIdem(ctx)
	if err := f.fail("CreateSession"); err != nil {
		return store.Session{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions == nil {
		f.sessions = map[string]*store.Session{}
	}
	f.index++
	s := &store.Session{ID: fmt.Sprintf("s%d", f.index), Name: o.Name, TTL: o.TTL, Behavior: o.Behavior,
		LockDelay: o.LockDelay, CreateIndex: f.index, RenewIndex: f.index}
	f.sessions[s.ID] = s
	return *s, nil
}

func (f *fakeStore) session(id string) (*store.Session, error) {
	s, ok := f.sessions[id]
	if !ok {
		return nil, fmt.Errorf("session %q: %w", id, store.ErrSessionNotFound)
	}
	return s, nil
}

// noteIdem records a session write's idempotency key, as Put, Delete and Txn do.
func (f *fakeStore) noteIdem(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idemKeys = append(f.idemKeys, store.IdempotencyKey(ctx))
}

func (f *fakeStore) RenewSession(ctx context.Context, id string) (time.Duration, error) {
	f.noteIdem(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.session(id)
	if err != nil {
		return 0, err
	}
	return s.TTL, nil
}

func (f *fakeStore) DestroySession(ctx context.Context, id string) (uint64, error) {
	f.noteIdem(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.session(id); err != nil {
		return 0, err
	}
	delete(f.sessions, id)
	f.index++
	return f.index, nil
}

func (f *fakeStore) GetSession(_ context.Context, id string, _ store.Consistency) (store.Session, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.session(id)
	if err != nil {
		return store.Session{}, f.index, err
	}
	c := *s
	c.HeldKeys = []string{}
	for k, e := range f.data {
		if e.Holder() == id {
			c.HeldKeys = append(c.HeldKeys, k)
		}
	}
	sort.Strings(c.HeldKeys)
	return c, f.index, nil
}

func (f *fakeStore) Sessions(context.Context, store.Consistency) ([]store.Session, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Session
	for _, s := range f.sessions {
		out = append(out, *s)
	}
	return out, f.index, nil
}

func (f *fakeStore) lockWrite(key string, value []byte, id string, take bool) (store.LockOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.session(id); err != nil && take {
		return store.LockOutcome{}, err
	}
	f.index++
	e, ok := f.data[key]
	if take && ok && e.Holder() != "" && e.Holder() != id {
		return store.LockOutcome{Index: f.index, Token: e.LockIndex()}, nil
	}
	if !take && e.Holder() != id {
		return store.LockOutcome{Index: f.index}, nil
	}
	lock := &fsm.Lock{Index: e.LockIndex()}
	if take {
		lock.Session = id
		if e.Holder() != id {
			lock.Index = f.index
		}
	}
	f.data[key] = store.Entry{Key: key, Value: value, CreateIndex: f.index, ModIndex: f.index, Lock: lock}
	return store.LockOutcome{Index: f.index, Token: lock.Index, OK: true}, nil
}

func (f *fakeStore) PutOwned(ctx context.Context, key string, value []byte, id string) (uint64, error) {
	f.noteIdem(ctx)
	out, err := f.lockWrite(key, value, id, true)
	if err == nil && !out.OK {
		err = store.ErrKeyHeld
	}
	return out.Index, err
}

func (f *fakeStore) Acquire(ctx context.Context, key string, value []byte, id string) (store.LockOutcome, error) {
	f.noteIdem(ctx)
	if err := f.fail("Acquire"); err != nil {
		return store.LockOutcome{}, err
	}
	return f.lockWrite(key, value, id, true)
}

func (f *fakeStore) Release(ctx context.Context, key string, value []byte, id string) (store.LockOutcome, error) {
	f.noteIdem(ctx)
	if err := f.fail("Release"); err != nil {
		return store.LockOutcome{}, err
	}
	return f.lockWrite(key, value, id, false)
}

func TestSessionCreateRenewDestroy(t *testing.T) {
	h, _ := newTestServer(t)
	rec := do(t, h, http.MethodPost, "/v1/session", `{"ttl":"10s","behavior":"delete","lock_delay":"1s","name":"web"}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var s struct {
		ID, Name, TTL, Behavior string
		TTLMs                   int64  `json:"ttl_ms"`
		LockDelay               string `json:"lock_delay"`
	}
	decodeJSON(t, rec, &s)
	assert.Equal(t, "web", s.Name)
	assert.Equal(t, "10s", s.TTL)
	assert.Equal(t, int64(10000), s.TTLMs)
	assert.Equal(t, "delete", s.Behavior)
	assert.Equal(t, "1s", s.LockDelay)

	rec = do(t, h, http.MethodPut, "/v1/session/"+s.ID+"/renew", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), `"ttl":"10s"`)
	rec = do(t, h, http.MethodGet, "/v1/session/"+s.ID, "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), `"keys":[]`)
	rec = do(t, h, http.MethodGet, "/v1/sessions", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), s.ID)
	require.Equal(t, http.StatusOK, do(t, h, http.MethodDelete, "/v1/session/"+s.ID, "").Code)

	rec = do(t, h, http.MethodPut, "/v1/session/"+s.ID+"/renew", "")
	require.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), `"code":"session_not_found"`)
	assert.Equal(t, http.StatusMethodNotAllowed, do(t, h, http.MethodGet, "/v1/session/x/renew", "").Code)
	assert.Equal(t, http.StatusNotFound, do(t, h, http.MethodGet, "/v1/session/x/y", "").Code)
}

func TestSessionCreateRefusesBadInput(t *testing.T) {
	h, _ := newTestServer(t)
	for body, want := range map[string]string{
		`{"ttl":"1s"}`:                    "outside [2s, 24h0m0s]",
		`{"ttl":"25h"}`:                   "outside",
		`{"ttl":"ten"}`:                   "duration",
		`{"ttl":"10s","behavior":"x"}`:    "behavior",
		`{"ttl":"10s","lock_delay":"2m"}`: "lock_delay",
		`{"ttl":"10s","bogus":1}`:         "unknown field",
		`[`:                               "not a session object",
	} {
		rec := do(t, h, http.MethodPost, "/v1/session", body)
		require.Equal(t, http.StatusBadRequest, rec.Code, body)
		assert.Contains(t, rec.Body.String(), want, body)
		assert.Contains(t, rec.Body.String(), `"code":"invalid_body"`, body)
	}
	rec := do(t, h, http.MethodPost, "/v1/session", "")
	require.Equal(t, http.StatusOK, rec.Code, "an empty body takes the defaults")
	assert.Contains(t, rec.Body.String(), `"ttl":"15s"`)
}

func TestLockAcquireReleaseOverHTTP(t *testing.T) {
	h, _ := newTestServer(t)
	rec := do(t, h, http.MethodPost, "/v1/session", `{"ttl":"10s"}`)
	var a, b struct{ ID string }
	decodeJSON(t, rec, &a)
	decodeJSON(t, do(t, h, http.MethodPost, "/v1/session", `{"ttl":"10s"}`), &b)

	var got struct {
		Index    uint64
		Acquired bool
		Released bool
	}
	decodeJSON(t, do(t, h, http.MethodPut, "/v1/kv/lock?acquire="+a.ID, "a"), &got)
	require.True(t, got.Acquired)
	token := got.Index
	rec = do(t, h, http.MethodGet, "/v1/kv/lock", "")
	assert.Equal(t, a.ID, rec.Header().Get("X-Kv-Session"))
	assert.Equal(t, fmt.Sprint(token), rec.Header().Get("X-Kv-Lock-Index"))

	// A list and a transaction's get show the holder and the token too, as "session" and "lock_index".
	plain := do(t, h, http.MethodPut, "/v1/kv/lockless", "x")
	require.Equal(t, http.StatusOK, plain.Code)
	var listed []map[string]any
	decodeJSON(t, do(t, h, http.MethodGet, "/v1/kv?prefix=lock", ""), &listed)
	require.Len(t, listed, 2)
	assert.Equal(t, a.ID, listed[0]["session"])
	assert.EqualValues(t, token, listed[0]["lock_index"])
	assert.NotContains(t, listed[1], "session", "a key never locked has no lock fields")
	assert.NotContains(t, listed[1], "lock_index")
	rec = do(t, h, http.MethodPost, "/v1/txn", `{"success":[{"op":"get","key":"lock"}]}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), `"session":"`+a.ID+`","lock_index":`+fmt.Sprint(token))

	decodeJSON(t, do(t, h, http.MethodPut, "/v1/kv/lock?acquire="+b.ID, "b"), &got)
	require.False(t, got.Acquired)
	rec = do(t, h, http.MethodPut, "/v1/kv/lock?session="+b.ID, "b")
	require.Equal(t, http.StatusConflict, rec.Code)
	assert.Contains(t, rec.Body.String(), `"code":"key_held"`)

	decodeJSON(t, do(t, h, http.MethodPut, "/v1/kv/lock?release="+a.ID, "free"), &got)
	require.True(t, got.Released)
	rec = do(t, h, http.MethodGet, "/v1/kv/lock", "")
	assert.Empty(t, rec.Header().Get("X-Kv-Session"))
	assert.Equal(t, fmt.Sprint(token), rec.Header().Get("X-Kv-Lock-Index"), "the token stays after a release")
	listed = nil
	decodeJSON(t, do(t, h, http.MethodGet, "/v1/kv?prefix=lock&limit=1", ""), &listed)
	assert.NotContains(t, listed[0], "session", "released: no holder")
	assert.EqualValues(t, token, listed[0]["lock_index"])

	for _, q := range []string{"acquire=" + a.ID + "&release=" + a.ID, "acquire=" + a.ID + "&cas=0", "acquire="} {
		rec = do(t, h, http.MethodPut, "/v1/kv/lock?"+q, "x")
		assert.Equal(t, http.StatusBadRequest, rec.Code, q)
	}
	rec = do(t, h, http.MethodPut, "/v1/kv/x?acquire=nope", "x")
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

func TestTxnPutWithSession(t *testing.T) {
	h, f := newTestServer(t)
	rec := do(t, h, http.MethodPost, "/v1/txn", `{"success":[{"op":"put","key":"k","value":"dg==","session":"s1"}]}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, fsm.TxnPutSession, f.lastTxn.Success[0].Kind)
	require.Equal(t, "s1", f.lastTxn.Success[0].Session)
	rec = do(t, h, http.MethodPost, "/v1/txn", `{"success":[{"op":"delete","key":"k","session":"s1"}]}`)
	require.Equal(t, http.StatusBadRequest, rec.Code)
}

func newTestServer(t *testing.T) (http.Handler, *fakeStore) {
	hs := newHarness(t, Options{})
	return hs.h, hs.store
}

func do(t *testing.T, h http.Handler, method, target, b string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, body(b)))
	return rec
}

func decodeJSON(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	requireJSON(t, rec, v)
}

// Session and lock writes take an Idempotency-Key like any write (the FSM replays their first outcome;
// fsm's TestIdempotentSessionAndLockOutcomesAreReplayed): it reaches the store on every route, a
// malformed one is refused and never dropped, a reused one is 422.
func TestSessionWritesCarryTheirIdempotencyKey(t *testing.T) {
	hs := newHarness(t, Options{})
	req := func(method, target, b string, keys ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, body(b))
		for _, k := range keys {
			r.Header.Add("Idempotency-Key", k)
		}
		return hs.serve(r)
	}
	rec := req(http.MethodPost, "/v1/session", `{"ttl":"10s"}`, "create-1")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var sess struct {
		ID string `json:"id"`
	}
	decodeJSON(t, rec, &sess)
	for _, c := range []struct{ method, target, key string }{
		{http.MethodPut, "/v1/session/" + sess.ID + "/renew", "renew-1"},
		{http.MethodPut, "/v1/kv/owned?session=" + sess.ID, "put-1"},
		{http.MethodPut, "/v1/kv/lock?acquire=" + sess.ID, "acquire-1"},
		{http.MethodPut, "/v1/kv/lock?release=" + sess.ID, "release-1"},
		{http.MethodDelete, "/v1/session/" + sess.ID, "destroy-1"},
	} {
		rec := req(c.method, c.target, "v", c.key)
		require.Equal(t, http.StatusOK, rec.Code, "%s %s: %s", c.method, c.target, rec.Body.String())
	}
	require.Equal(t, []string{"create-1", "renew-1", "put-1", "acquire-1", "release-1", "destroy-1"}, hs.store.idemKeys)

	for _, target := range []string{"/v1/kv/lock?acquire=s1", "/v1/kv/lock?release=s1"} {
		requireError(t, req(http.MethodPut, target, "v", "has space"), http.StatusBadRequest, "invalid_parameter")
		requireError(t, req(http.MethodPut, target, "v", "a", "b"), http.StatusBadRequest, "invalid_parameter")
	}
	requireError(t, req(http.MethodPost, "/v1/session", `{"ttl":"10s"}`, "a", "b"), http.StatusBadRequest, "invalid_parameter")
	requireError(t, req(http.MethodPut, "/v1/session/s1/renew", "", "has space"), http.StatusBadRequest, "invalid_parameter")
	requireError(t, req(http.MethodDelete, "/v1/session/s1", "", "has space"), http.StatusBadRequest, "invalid_parameter")
	require.Len(t, hs.store.idemKeys, 6, "a refused key never reaches the store")

	hs.store.errs["Release"] = fmt.Errorf("release: %w: key %q", store.ErrIdempotencyKeyReused, "release-1")
	requireError(t, req(http.MethodPut, "/v1/kv/lock?release=s1", "other", "release-1"), http.StatusUnprocessableEntity, "idempotency_key_reused")
	hs.store.errs["Acquire"] = fmt.Errorf("acquire: %w: the leader applies format 5", store.ErrIdempotencyUnsupported)
	requireError(t, req(http.MethodPut, "/v1/kv/lock?acquire=s1", "v", "acquire-2"), http.StatusServiceUnavailable, "idempotency_unsupported")
}
