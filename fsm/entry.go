package fsm

// Entry is one key of the replicated key space. Value must be treated as read-only by callers:
// the FSM hands out the stored slice without copying.
type Entry struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
	// Lock is nil for a key no session has ever owned or locked (almost every key: a pointer, so that
	// the rest pay 8 bytes for it). A Lock is never modified once in the tree; a change replaces it.
	Lock *Lock `json:"lock,omitempty"`
}

// Lock is a key's session ownership.
type Lock struct {
	// Session holds the key ("" once released: the key stays, with no holder). A key owned by a session
	// is deleted or released, at one write index, when the session ends.
	Session string `json:"session,omitempty"`
	// Index is the write index of the acquire that took the lock: the fencing token. It only grows for a
	// key, because write indexes do; 0 for a key owned by ?session= without ever being acquired.
	Index uint64 `json:"index,omitempty"`
}

// Holder is the session holding e, or "".
func (e Entry) Holder() string {
	if e.Lock == nil {
		return ""
	}
	return e.Lock.Session
}

// LockIndex is e's fencing token, or 0.
func (e Entry) LockIndex() uint64 {
	if e.Lock == nil {
		return 0
	}
	return e.Lock.Index
}
