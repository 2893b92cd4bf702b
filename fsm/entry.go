package fsm

// Entry is one key of the replicated key space. Value must be treated as read-only by callers:
// the FSM hands out the stored slice without copying.
type Entry struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}
