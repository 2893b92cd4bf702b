package acl

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// Errors a Command can fail with. They are part of the replicated outcome: every node reaches the same.
var (
	ErrBootstrapped = errors.New("acl: already bootstrapped")
	ErrNotFound     = errors.New("acl: not found")
	ErrExists       = errors.New("acl: already exists")
	// ErrUnauthenticated and ErrPermissionDenied are the decision's answers, mapped to 401 and 403.
	ErrUnauthenticated  = errors.New("acl: unauthenticated")
	ErrPermissionDenied = errors.New("acl: permission denied")
)

// State is the replicated ACL state at one point of the log. It is immutable: a Command makes a new
// State (copy-on-write; ACL changes are rare, decisions are not), so a decision never takes a lock.
type State struct {
	bootstrapped bool
	tokens       map[string]*Token   // accessor id → token
	byHash       map[[32]byte]*Token // secret hash → token
	policies     map[string]*Policy  // name → policy

	authz sync.Map // accessor id → *Authorizer, compiled on first use in this State

	// changed is closed when a newer State replaces this one (Live.Store): live watches re-decide.
	changed   chan struct{}
	closeOnce sync.Once
}

// NewState is the empty state: not bootstrapped, no tokens, no policies.
func NewState() *State {
	return &State{tokens: map[string]*Token{}, byHash: map[[32]byte]*Token{}, policies: map[string]*Policy{}, changed: make(chan struct{})}
}

// Bootstrapped reports whether the management token has been handed out.
func (s *State) Bootstrapped() bool { return s.bootstrapped }

// Changed is closed once a newer state has replaced this one.
func (s *State) Changed() <-chan struct{} { return s.changed }

// Empty reports whether the state holds nothing (so an older snapshot format can still carry it).
func (s *State) Empty() bool { return !s.bootstrapped && len(s.tokens) == 0 && len(s.policies) == 0 }

// Resolve returns the Authorizer for a secret, or ErrUnauthenticated if no token has it.
func (s *State) Resolve(secret string) (*Authorizer, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: no token (send Authorization: Bearer <secret> or X-Raftkv-Token)", ErrUnauthenticated)
	}
	tok := s.byHash[HashSecret(secret)]
	if tok == nil {
		return nil, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	if a, ok := s.authz.Load(tok.AccessorID); ok {
		return a.(*Authorizer), nil
	}
	a := newAuthorizer(tok, s.policies)
	s.authz.Store(tok.AccessorID, a)
	return a, nil
}

// Tokens lists the tokens by accessor id (no secrets: the state has none).
func (s *State) Tokens() []Token {
	out := make([]Token, 0, len(s.tokens))
	for _, id := range slices.Sorted(maps.Keys(s.tokens)) {
		t := *s.tokens[id]
		t.Policies = slices.Clone(t.Policies)
		out = append(out, t)
	}
	return out
}

// Token returns one token by accessor id.
func (s *State) Token(accessor string) (Token, bool) {
	t, ok := s.tokens[accessor]
	if !ok {
		return Token{}, false
	}
	c := *t
	c.Policies = slices.Clone(t.Policies)
	return c, true
}

// Policies lists the policies by name.
func (s *State) Policies() []Policy {
	out := make([]Policy, 0, len(s.policies))
	for _, n := range slices.Sorted(maps.Keys(s.policies)) {
		out = append(out, *clonePolicy(s.policies[n]))
	}
	return out
}

// Policy returns one policy by name.
func (s *State) Policy(name string) (Policy, bool) {
	p, ok := s.policies[name]
	if !ok {
		return Policy{}, false
	}
	return *clonePolicy(p), true
}

func (s *State) clone() *State {
	return &State{
		bootstrapped: s.bootstrapped,
		tokens:       maps.Clone(s.tokens),
		byHash:       maps.Clone(s.byHash),
		policies:     maps.Clone(s.policies),
		changed:      make(chan struct{}),
	}
}

// CommandKind says what a Command does.
type CommandKind uint8

// The command kinds. Their values are part of the log format: never renumber or reuse one.
const (
	CmdBootstrap    CommandKind = 1 // add the first management token, once per cluster
	CmdCreateToken  CommandKind = 2
	CmdDeleteToken  CommandKind = 3 // Name = accessor id
	CmdSetPolicy    CommandKind = 4 // create or replace
	CmdDeletePolicy CommandKind = 5 // Name = policy name
)

// Command is one replicated change to the ACL state. It carries everything its application needs
// (the token's secret hash, made by the proposer): applying it reads no clock and no randomness.
type Command struct {
	Kind   CommandKind `json:"kind"`
	Token  *WireToken  `json:"token,omitempty"`
	Policy *Policy     `json:"policy,omitempty"`
	Name   string      `json:"name,omitempty"`
}

// WireToken is a Token as the log and snapshots hold it: with its secret's hash, hex-encoded.
type WireToken struct {
	Token
	Hash string `json:"secret_sha256"`
}

func toWire(t *Token) *WireToken {
	w := &WireToken{Token: *t, Hash: hex.EncodeToString(t.SecretHash[:])}
	w.SecretHash = [32]byte{} // carried by Hash only, so a command reads back equal to itself
	return w
}

func (w *WireToken) token() (*Token, error) {
	t := w.Token
	h, err := hex.DecodeString(w.Hash)
	if err != nil || len(h) != 32 {
		return nil, fmt.Errorf("%w: token %q: secret hash must be 64 hex digits", ErrInvalid, t.AccessorID)
	}
	copy(t.SecretHash[:], h)
	t.Policies = slices.Clone(t.Policies)
	return &t, t.Validate()
}

// commandVersion prefixes every encoded command. The payload is JSON: ACL commands are rare and small,
// and JSON lets the format grow fields; it is decoded strictly, so every node reads it the same way.
const commandVersion = 1

// BootstrapCommand, CreateTokenCommand, ... build the commands a proposer submits.
func BootstrapCommand(t *Token) Command   { return Command{Kind: CmdBootstrap, Token: toWire(t)} }
func CreateTokenCommand(t *Token) Command { return Command{Kind: CmdCreateToken, Token: toWire(t)} }

// DeleteTokenCommand deletes the token with that accessor id.
func DeleteTokenCommand(accessor string) Command {
	return Command{Kind: CmdDeleteToken, Name: accessor}
}

// SetPolicyCommand creates or replaces p.
func SetPolicyCommand(p *Policy) Command { return Command{Kind: CmdSetPolicy, Policy: clonePolicy(p)} }

// DeletePolicyCommand deletes the named policy.
func DeletePolicyCommand(name string) Command { return Command{Kind: CmdDeletePolicy, Name: name} }

// Encode returns the command's bytes (the Value of an fsm.OpACL command).
func (c Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("acl: encode command: %v", err)) // only plain fields: cannot fail
	}
	return append([]byte{commandVersion}, b...)
}

// DecodeCommand parses Encode's output strictly.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 || b[0] != commandVersion {
		return Command{}, fmt.Errorf("%w: acl command: unknown version", ErrInvalid)
	}
	var c Command
	dec := json.NewDecoder(bytes.NewReader(b[1:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Command{}, fmt.Errorf("%w: acl command: %v", ErrInvalid, err)
	}
	if dec.More() {
		return Command{}, fmt.Errorf("%w: acl command: trailing data", ErrInvalid)
	}
	return c, nil
}

// Apply returns the state after c, applied at write index index, or s itself and the reason c changes
// nothing. It is deterministic: same state, same command, same outcome on every node.
func (s *State) Apply(c Command, index uint64) (*State, error) {
	switch c.Kind {
	case CmdBootstrap, CmdCreateToken:
		if c.Token == nil {
			return s, fmt.Errorf("%w: no token", ErrInvalid)
		}
		t, err := c.Token.token()
		if err != nil {
			return s, err
		}
		if c.Kind == CmdBootstrap {
			if s.bootstrapped {
				return s, ErrBootstrapped
			}
			t.Management, t.Policies = true, nil
		}
		if _, dup := s.tokens[t.AccessorID]; dup {
			return s, fmt.Errorf("%w: token %s", ErrExists, t.AccessorID)
		}
		if _, dup := s.byHash[t.SecretHash]; dup {
			return s, fmt.Errorf("%w: a token with this secret", ErrExists)
		}
		for _, p := range t.Policies {
			if s.policies[p] == nil {
				return s, fmt.Errorf("%w: no policy %q", ErrNotFound, p)
			}
		}
		if len(s.tokens) >= maxTokensAll {
			return s, fmt.Errorf("%w: at most %d tokens", ErrInvalid, maxTokensAll)
		}
		t.CreateIndex = index
		n := s.clone()
		n.tokens[t.AccessorID], n.byHash[t.SecretHash] = t, t
		if c.Kind == CmdBootstrap {
			n.bootstrapped = true
		}
		return n, nil
	case CmdDeleteToken:
		t := s.tokens[c.Name]
		if t == nil {
			return s, fmt.Errorf("%w: token %q", ErrNotFound, c.Name)
		}
		n := s.clone()
		delete(n.tokens, t.AccessorID)
		delete(n.byHash, t.SecretHash)
		return n, nil
	case CmdSetPolicy:
		if c.Policy == nil {
			return s, fmt.Errorf("%w: no policy", ErrInvalid)
		}
		p := clonePolicy(c.Policy)
		if err := p.Validate(); err != nil {
			return s, err
		}
		p.CreateIndex, p.ModIndex = index, index
		if old := s.policies[p.Name]; old != nil {
			p.CreateIndex = old.CreateIndex
		} else if len(s.policies) >= maxPoliciesAll {
			return s, fmt.Errorf("%w: at most %d policies", ErrInvalid, maxPoliciesAll)
		}
		n := s.clone()
		n.policies[p.Name] = p
		return n, nil
	case CmdDeletePolicy:
		if s.policies[c.Name] == nil {
			return s, fmt.Errorf("%w: policy %q", ErrNotFound, c.Name)
		}
		n := s.clone()
		delete(n.policies, c.Name)
		return n, nil
	}
	return s, fmt.Errorf("%w: unknown acl command kind %d", ErrInvalid, c.Kind)
}

// snapshotState is the State as a snapshot stores it: sorted, so the same state gives the same bytes.
type snapshotState struct {
	Bootstrapped bool         `json:"bootstrapped"`
	Tokens       []*WireToken `json:"tokens"`
	Policies     []*Policy    `json:"policies"`
}

// MarshalBinary encodes the state for an FSM snapshot.
func (s *State) MarshalBinary() ([]byte, error) {
	ss := snapshotState{Bootstrapped: s.bootstrapped, Tokens: []*WireToken{}, Policies: []*Policy{}}
	for _, id := range slices.Sorted(maps.Keys(s.tokens)) {
		ss.Tokens = append(ss.Tokens, toWire(s.tokens[id]))
	}
	for _, n := range slices.Sorted(maps.Keys(s.policies)) {
		ss.Policies = append(ss.Policies, s.policies[n])
	}
	return json.Marshal(ss)
}

// UnmarshalState decodes MarshalBinary's output, checking what Apply would have checked.
func UnmarshalState(b []byte) (*State, error) {
	var ss snapshotState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ss); err != nil {
		return nil, fmt.Errorf("%w: acl state: %v", ErrInvalid, err)
	}
	s := NewState()
	s.bootstrapped = ss.Bootstrapped
	for _, p := range ss.Policies {
		if p == nil || p.Validate() != nil || s.policies[p.Name] != nil {
			return nil, fmt.Errorf("%w: acl state: bad or repeated policy", ErrInvalid)
		}
		s.policies[p.Name] = p
	}
	for _, w := range ss.Tokens {
		if w == nil {
			return nil, fmt.Errorf("%w: acl state: null token", ErrInvalid)
		}
		t, err := w.token()
		if err != nil {
			return nil, fmt.Errorf("acl state: %w", err)
		}
		if s.tokens[t.AccessorID] != nil || s.byHash[t.SecretHash] != nil {
			return nil, fmt.Errorf("%w: acl state: repeated token %s", ErrInvalid, t.AccessorID)
		}
		s.tokens[t.AccessorID], s.byHash[t.SecretHash] = t, t
	}
	return s, nil
}

// Live holds the current State of a node and tells watchers when it changes. The FSM stores into it;
// httpapi loads from it on every request.
type Live struct {
	cur atomic.Pointer[State]
}

// NewLive starts at the empty state.
func NewLive() *Live {
	l := &Live{}
	l.cur.Store(NewState())
	return l
}

// Load returns the current state.
func (l *Live) Load() *State { return l.cur.Load() }

// Store makes s current and closes the previous state's Changed channel.
func (l *Live) Store(s *State) {
	if old := l.cur.Swap(s); old != nil && old != s {
		old.closeOnce.Do(func() { close(old.changed) })
	}
}

// errorCodes number the Apply errors for the node-to-node wire (a follower that forwarded a command
// turns the leader's answer back into the same sentinel). Never renumber.
var errorCodes = []error{nil, ErrBootstrapped, ErrNotFound, ErrExists, ErrInvalid}

// ErrorCode is err's wire code (0 for none, ErrInvalid's for an error that is none of the sentinels).
func ErrorCode(err error) byte {
	if err == nil {
		return 0
	}
	for i, e := range errorCodes[1:] {
		if errors.Is(err, e) {
			return byte(i + 1)
		}
	}
	return 4
}

// ErrorFromCode rebuilds an Apply error from its wire code and message.
func ErrorFromCode(code byte, msg string) error {
	if code == 0 {
		return nil
	}
	if int(code) >= len(errorCodes) {
		code = 4
	}
	return &wireError{sentinel: errorCodes[code], msg: msg}
}

type wireError struct {
	sentinel error
	msg      string
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }

// ResetIndex is what an operator writes into a node's bootstrap reset file to bootstrap again
// (store/aclreset.go): the newest write index among the tokens and policies this state holds. A reset
// creates a token, which moves it, so a reset file is good for one reset of the state it names.
func (s *State) ResetIndex() uint64 {
	var n uint64
	for _, t := range s.tokens {
		n = max(n, t.CreateIndex)
	}
	for _, p := range s.policies {
		n = max(n, p.ModIndex)
	}
	return n
}
