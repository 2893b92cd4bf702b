package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/raftkv/raftkv/store"
	"github.com/raftkv/raftkv/watch"
)

// Response headers of the key-value routes.
const (
	headerModIndex    = "X-Kv-Mod-Index"
	headerCreateIndex = "X-Kv-Create-Index"
	headerKnownLeader = "X-Kv-Known-Leader"
	headerLastContact = "X-Kv-Last-Contact-Ms"
	headerApplied     = "X-Kv-Applied-Index"
	headerMore        = "X-Kv-More"
	headerNextAfter   = "X-Kv-Next-After"
	// headerIndex is on every read: the write index the answer reflects. Every write up to it is in the
	// answer and none after it, so a watch from it + 1 continues the read without a gap.
	headerIndex = "X-Kv-Index"
)

// listFlushSize bounds the list response buffer: a page may hold up to MaxListLimit values of up to
// MaxValueSize each, so it is streamed rather than built whole.
const listFlushSize = 64 << 10

// handleGet serves GET (and HEAD) /v1/kv/{key}?consistency=&min_index=: the raw value, its indexes in
// headers.
func (s *server) handleGet(w http.ResponseWriter, r *http.Request, escapedKey string) {
	key, err := s.keyFromPath(escapedKey)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := parseReadParams(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// min_index first, also before a long-poll: a node that cannot catch up says so within the
	// request timeout (503 timeout, ask another node) instead of holding the poll on a lagging node.
	if err := s.waitIndex(r, p.minIndex); err != nil {
		s.writeError(w, r, err)
		return
	}
	if p.poll.seenIndex {
		extendDeadlines(w, p.poll.wait)
		s.longPoll(r, &watch.Filter{Key: key}, p.poll.index, p.poll.wait)
		if _, err := s.recheck(r.Context()); err != nil { // the ACLs may have changed while it waited
			s.writeError(w, r, err)
			return
		}
	}
	if p.consistency == store.Stale {
		s.setStaleHeaders(w.Header())
	}
	e, index, err := s.store.GetAt(r.Context(), key, p.consistency)
	h := w.Header()
	if index != 0 { // also on a 404: the key was absent at that index
		h[headerIndex] = []string{strconv.FormatUint(index, 10)}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h["Content-Type"] = contentTypeOctet
	setUintHeaders(h, headerModIndex, e.ModIndex, headerCreateIndex, e.CreateIndex)
	if e.Lock != nil {
		if e.Lock.Session != "" {
			h[headerHolder] = []string{e.Lock.Session}
		}
		h[headerLockIndex] = []string{strconv.FormatUint(e.Lock.Index, 10)}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.Value)
}

// handlePut serves PUT /v1/kv/{key}?cas=N: the body is the value.
func (s *server) handlePut(w http.ResponseWriter, r *http.Request, escapedKey string) {
	key, err := s.keyFromPath(escapedKey)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pre, sp, err := parsePutParams(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	value, err := s.readValue(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if sp.mode != "" {
		s.handleSessionPut(w, r, key, value, sp)
		return
	}
	ctx, err := writeContext(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	index, err := s.store.Put(ctx, key, value, pre)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeIndex(w, index)
}

// handleDelete serves DELETE /v1/kv/{key}?cas=N.
func (s *server) handleDelete(w http.ResponseWriter, r *http.Request, escapedKey string) {
	key, err := s.keyFromPath(escapedKey)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pre, err := parseWriteParams(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, err := writeContext(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	index, deleted, err := s.store.Delete(ctx, key, pre)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b := make([]byte, 0, 48)
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, `,"deleted":`...)
	b = strconv.AppendBool(b, deleted)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

// handleList serves GET /v1/kv?prefix=&after=&limit=&consistency=&min_index=: a JSON array of entries in key order.
// When more keys remain, X-Kv-More is "true" and X-Kv-Next-After holds the last key, query-escaped,
// ready to be sent back as after=.
func (s *server) handleList(w http.ResponseWriter, r *http.Request) {
	p, err := s.parseListParams(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// min_index first, also before a long-poll: a node that cannot catch up says so within the
	// request timeout (503 timeout, ask another node) instead of holding the poll on a lagging node.
	if err := s.waitIndex(r, p.minIndex); err != nil {
		s.writeError(w, r, err)
		return
	}
	if p.poll.seenIndex {
		extendDeadlines(w, p.poll.wait)
		s.longPoll(r, &watch.Filter{Prefix: p.prefix, IsPrefix: true}, p.poll.index, p.poll.wait)
		if _, err := s.recheck(r.Context()); err != nil { // the ACLs may have changed while it waited
			s.writeError(w, r, err)
			return
		}
	}
	if p.consistency == store.Stale {
		s.setStaleHeaders(w.Header())
	}
	entries, more, index, err := s.store.ListAt(r.Context(), p.prefix, p.after, p.limit, p.consistency)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h[headerIndex] = []string{strconv.FormatUint(index, 10)}
	if more && len(entries) > 0 { // a "more" without a last key would send the client round forever
		h[headerMore] = headerTrue
		h[headerNextAfter] = []string{url.QueryEscape(entries[len(entries)-1].Key)}
	}
	h["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusOK)

	b := make([]byte, 0, min(listFlushSize, 2+listSizeEstimate(entries)))
	b = append(b, '[')
	for i := range entries {
		e := &entries[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, e.Key)
		b = append(b, `,"value":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.Value)
		b = append(b, `","create_index":`...)
		b = strconv.AppendUint(b, e.CreateIndex, 10)
		b = append(b, `,"mod_index":`...)
		b = strconv.AppendUint(b, e.ModIndex, 10)
		b = appendLockFields(b, e)
		b = append(b, '}')
		if len(b) >= listFlushSize {
			if _, err := w.Write(b); err != nil {
				return // the client is gone
			}
			b = b[:0]
		}
	}
	b = append(b, ']')
	_, _ = w.Write(b)
}

// listSizeEstimate is roughly the encoded size of entries, to size the buffer once for small pages.
func listSizeEstimate(entries []store.Entry) int {
	n := 0
	for i := range entries {
		n += len(entries[i].Key) + base64.StdEncoding.EncodedLen(len(entries[i].Value)) + 80
		if n >= listFlushSize {
			break
		}
	}
	return n
}

// readValue reads a PUT body of at most MaxValueSize bytes. A body shorter than its Content-Length, or one
// that fails to read, is invalid_body; a longer one is value_too_large. Either way nothing is written.
func (s *server) readValue(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.opts.MaxValueSize
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	if r.Body == nil { // only hand-made requests; a server request always has a Body
		return []byte{}, nil
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength >= 0 {
		value, err := readGrowing(body, int(r.ContentLength))
		if err != nil {
			return nil, bodyError(err, limit)
		}
		return value, nil
	}
	value, err := io.ReadAll(body) // chunked: length unknown until the end
	if err != nil {
		return nil, bodyError(err, limit)
	}
	return value, nil
}

// readGrowing reads exactly n bytes into a buffer that starts small and doubles as bytes arrive, never
// past n: what a request holds is bounded by what its client has sent (at most twice), not by the
// Content-Length it announced. One that announces 1 MiB and sends nothing costs 64 KiB at most.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, readChunk))
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), cap(b)))
		}
		k, err := io.ReadFull(r, b[len(b):min(cap(b), n)])
		b = b[:len(b)+k]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

const readChunk = 64 << 10

func bodyError(err error, limit int64) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return tooLarge(limit)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &apiError{http.StatusBadRequest, codeInvalidBody, "request body is shorter than its Content-Length"}
	}
	return &apiError{http.StatusBadRequest, codeInvalidBody, "reading request body: " + err.Error()}
}

func tooLarge(limit int64) error {
	return &apiError{http.StatusRequestEntityTooLarge, codeValueTooLarge,
		"value is over the limit of " + strconv.FormatInt(limit, 10) + " bytes"}
}

// headerIdempotencyKey makes a write exactly-once under retries (store.WithIdempotencyKey).
const headerIdempotencyKey = "Idempotency-Key"

// writeContext is the context a write runs under: the request's, carrying its Idempotency-Key if it
// has one. A malformed or repeated key is refused rather than ignored: dropping it would turn a write
// the client believes safe to retry into one that is not.
func writeContext(r *http.Request) (context.Context, error) {
	vals := r.Header[headerIdempotencyKey]
	switch len(vals) {
	case 0:
		return r.Context(), nil
	case 1:
	default:
		return nil, paramError("header Idempotency-Key given more than once")
	}
	if problem := store.CheckIdempotencyKey(vals[0]); problem != "" {
		return nil, paramError("header Idempotency-Key " + problem)
	}
	return store.WithIdempotencyKey(r.Context(), vals[0]), nil
}

// waitIndex holds a read with min_index=N until this node has applied write N (store.ErrTimeout if it
// cannot catch up in time). It runs before the stale headers are read, so X-Kv-Applied-Index >= N.
func (s *server) waitIndex(r *http.Request, index uint64) error {
	if index == 0 {
		return nil
	}
	return s.store.WaitIndex(r.Context(), index)
}

// setStaleHeaders tells a stale reader how far behind this node may be. It is read before the store is,
// so X-Kv-Applied-Index is a lower bound on the state the answer reflects.
func (s *server) setStaleHeaders(h http.Header) {
	info := s.store.StaleInfo()
	if info.KnownLeader {
		h[headerKnownLeader] = headerTrue
	} else {
		h[headerKnownLeader] = headerFalse
	}
	if info.NoContact { // never heard from a leader: no number would be true, so none is sent
		h[headerApplied] = []string{strconv.FormatUint(info.WriteIndex, 10)}
		return
	}
	setUintHeaders(h, headerLastContact, uint64(max(info.LastContact.Milliseconds(), 0)), headerApplied, info.WriteIndex)
}

// setUintHeaders sets two decimal headers with two allocations instead of four (one string holding both
// numbers, one backing array for both value slices): it runs on every read.
func setUintHeaders(h http.Header, name1 string, v1 uint64, name2 string, v2 uint64) {
	var scratch [40]byte
	b := strconv.AppendUint(scratch[:0], v1, 10)
	split := len(b)
	b = strconv.AppendUint(b, v2, 10)
	both := string(b)
	vals := make([]string, 2)
	vals[0], vals[1] = both[:split], both[split:]
	h[name1] = vals[0:1:1]
	h[name2] = vals[1:2:2]
}
