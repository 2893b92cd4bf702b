// Package acl owns raftkv's authorization model: tokens, policies, and the decision whether a token may
// do an operation on a key range, on the cluster or on the ACLs themselves. It holds no I/O and no
// clock: the replicated state (State) changes only through Commands that fsm applies in log order, and
// the per-request decision (Authorizer) is a pure function of that state and a secret.
//
// It never sees HTTP: httpapi reduces every request to Needs and asks an Authorizer.
package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Access is what a rule grants. The grants are ordered: each one includes those below it.
//
//	read   get a key's value (also a compare on it, a get in a txn, a watch or long-poll on that one key)
//	list   enumerate the keys under a prefix with their values (list, a txn list op or count compare,
//	       a watch or long-poll on a prefix); includes read
//	write  put, delete and cas, delete_prefix; includes list and read
//
// deny is not a grant but a veto: see Authorizer for how rules combine.
type Access uint8

// The access levels. AccessNone (no rule) is the default, and the default denies.
const (
	AccessNone  Access = 0
	AccessRead  Access = 1
	AccessList  Access = 2
	AccessWrite Access = 3
	AccessDeny  Access = 4
)

var accessNames = [...]string{"", "read", "list", "write", "deny"}

func (a Access) String() string {
	if int(a) < len(accessNames) {
		return accessNames[a]
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// ParseAccess reads "read", "list", "write" or "deny" ("" is AccessNone).
func ParseAccess(s string) (Access, error) {
	for i, n := range accessNames {
		if n == s {
			return Access(i), nil
		}
	}
	return 0, fmt.Errorf("%w: access %q: want read, list, write or deny", ErrInvalid, s)
}

// MarshalText and UnmarshalText make Access read and write as its name in JSON.
func (a Access) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses an access name.
func (a *Access) UnmarshalText(b []byte) error {
	v, err := ParseAccess(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// allows reports whether a granted level satisfies need. deny and no rule satisfy nothing.
func (a Access) allows(need Access) bool {
	return a != AccessDeny && a != AccessNone && a >= need
}

// KeyRule grants Access on every key that starts with Prefix ("" is every key). A prefix is bytes, not
// path segments: "app" also covers "apple"; end a prefix with "/" to mean a folder.
type KeyRule struct {
	Prefix string `json:"prefix"`
	Access Access `json:"access"`
}

// Policy is a named set of rules. Cluster governs cluster operations (read: status, health, metrics;
// write: join, leave, remove a member), ACL the ACL system itself (read: list tokens and policies;
// write: create and delete them), and Session the sessions (read: list and read them; write: create,
// renew and destroy them — a session's keys need their own key rights on top). They accept read,
// write or deny; list means nothing there and is refused.
type Policy struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Keys        []KeyRule `json:"keys,omitempty"`
	Cluster     Access    `json:"cluster,omitempty"`
	ACL         Access    `json:"acl,omitempty"`
	Session     Access    `json:"session,omitempty"`
	CreateIndex uint64    `json:"create_index,omitempty"`
	ModIndex    uint64    `json:"modify_index,omitempty"`
}

// Limits that keep one policy and the ACL state small enough to decide on cheaply.
const (
	MaxNameLen     = 128
	MaxRules       = 1024
	MaxPrefixLen   = 1024
	MaxDescLen     = 512
	MaxPolicies    = 64 // per token
	maxPoliciesAll = 10000
	maxTokensAll   = 100000
	managementName = "management"
)

// ErrInvalid is wrapped by every validation error (a bad name, rule, policy reference).
var ErrInvalid = errors.New("acl: invalid")

// Validate checks a policy as a client submits it.
func (p *Policy) Validate() error {
	if err := checkName("policy name", p.Name); err != nil {
		return err
	}
	if p.Name == managementName {
		return fmt.Errorf("%w: policy name %q is reserved (a management token has every right)", ErrInvalid, p.Name)
	}
	if len(p.Description) > MaxDescLen {
		return fmt.Errorf("%w: description over %d bytes", ErrInvalid, MaxDescLen)
	}
	if len(p.Keys) > MaxRules {
		return fmt.Errorf("%w: %d key rules, at most %d", ErrInvalid, len(p.Keys), MaxRules)
	}
	seen := make(map[string]bool, len(p.Keys))
	for i, r := range p.Keys {
		if len(r.Prefix) > MaxPrefixLen || !utf8.ValidString(r.Prefix) {
			return fmt.Errorf("%w: key rule %d: prefix must be valid UTF-8 of at most %d bytes", ErrInvalid, i, MaxPrefixLen)
		}
		if r.Access == AccessNone || r.Access > AccessDeny {
			return fmt.Errorf("%w: key rule %d (%q): access must be read, list, write or deny", ErrInvalid, i, r.Prefix)
		}
		if seen[r.Prefix] {
			return fmt.Errorf("%w: key rule %d: prefix %q appears twice in the policy", ErrInvalid, i, r.Prefix)
		}
		seen[r.Prefix] = true
	}
	for _, c := range []struct {
		what string
		a    Access
	}{{"cluster", p.Cluster}, {"acl", p.ACL}, {"session", p.Session}} {
		if c.a == AccessList || c.a > AccessDeny {
			return fmt.Errorf("%w: %s access must be read, write or deny", ErrInvalid, c.what)
		}
	}
	return nil
}

func checkName(what, s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("%w: %s must be 1–%d bytes", ErrInvalid, what, MaxNameLen)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.", c)) {
			return fmt.Errorf("%w: %s %q: only letters, digits, '-', '_' and '.'", ErrInvalid, what, s)
		}
	}
	return nil
}

// ParsePolicy decodes a policy from JSON, strictly (unknown fields are errors), and validates it.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: policy: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: policy: trailing data", ErrInvalid)
	}
	p.CreateIndex, p.ModIndex = 0, 0
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func clonePolicy(p *Policy) *Policy {
	c := *p
	c.Keys = slices.Clone(p.Keys)
	return &c
}
