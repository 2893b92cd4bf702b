package acl

import (
	"slices"
	"sort"
	"strings"
)

// Resource is what a Need is about.
type Resource uint8

// The resources.
const (
	ResourceKey     Resource = iota + 1 // one key: Need.Key
	ResourcePrefix                      // every key that starts with Need.Key (a range; "" is the whole key space)
	ResourceCluster                     // cluster operations
	ResourceACL                         // the ACL system
	ResourceSession                     // sessions (the keys a session holds are decided as keys)
)

func (r Resource) String() string {
	switch r {
	case ResourceKey:
		return "key"
	case ResourcePrefix:
		return "prefix"
	case ResourceCluster:
		return "cluster"
	case ResourceACL:
		return "acl"
	case ResourceSession:
		return "session"
	}
	return "resource?"
}

// Need is one thing a request must be allowed to do: an access level on a resource. httpapi reduces
// every request to a list of Needs; the request proceeds only if every one is allowed.
type Need struct {
	Resource Resource
	Key      string // ResourceKey: the key; ResourcePrefix: the prefix
	Access   Access // AccessRead, AccessList or AccessWrite
}

// Authorizer decides for one token. It is immutable and safe for concurrent use.
//
// The rule for keys, precisely:
//
//  1. Among the key rules of all the token's policies, the ones whose prefix is a prefix of the key
//     apply; the longest such prefix (the most specific) alone decides. No applicable rule: denied.
//  2. Several policies may give the same prefix: then deny, if any gives it, wins; otherwise the
//     highest grant (write > list > read). So deny beats the rest at equal specificity, and a more
//     specific grant beats a less specific deny ("" deny with "app/" write lets the token write app/x).
//  3. A range (every key under prefix P) is allowed only if every key it could ever contain is:
//     the rule deciding for P itself allows it, and so does every rule with a longer prefix that
//     starts with P (a more specific deny or lower grant inside the range refuses the whole range).
//     A range is never allowed partially: lists, watches and range deletes are refused, never filtered.
//
// Cluster, ACL and session rules merge like 2 (deny wins, else the higher grant).
//
// A management token (from bootstrap) is allowed everything.
type Authorizer struct {
	accessor   string
	management bool
	cluster    Access
	acl        Access
	session    Access
	// rules sorted by prefix, with equal prefixes merged as in 2.
	prefixes []string
	access   []Access
	// byLen[L] is the rule of each distinct prefix length L, for the single-key decision: one map
	// lookup per distinct length, longest first.
	lens  []int // distinct prefix lengths, descending
	byLen map[int]map[string]Access
}

// Accessor is the token's public id (never its secret): who did it, for the audit log.
func (a *Authorizer) Accessor() string { return a.accessor }

// Management reports whether the token may do everything.
func (a *Authorizer) Management() bool { return a.management }

func newAuthorizer(tok *Token, policies map[string]*Policy) *Authorizer {
	a := &Authorizer{accessor: tok.AccessorID, management: tok.Management, byLen: map[int]map[string]Access{}}
	if a.management {
		return a
	}
	merged := map[string]Access{}
	for _, name := range tok.Policies {
		p := policies[name]
		if p == nil {
			continue // deleted since: it grants nothing
		}
		for _, r := range p.Keys {
			merged[r.Prefix] = merge(merged[r.Prefix], r.Access)
		}
		a.cluster = merge(a.cluster, p.Cluster)
		a.acl = merge(a.acl, p.ACL)
		a.session = merge(a.session, p.Session)
	}
	a.prefixes = make([]string, 0, len(merged))
	for p := range merged {
		a.prefixes = append(a.prefixes, p)
	}
	sort.Strings(a.prefixes)
	a.access = make([]Access, len(a.prefixes))
	for i, p := range a.prefixes {
		a.access[i] = merged[p]
		m := a.byLen[len(p)]
		if m == nil {
			m = map[string]Access{}
			a.byLen[len(p)] = m
			a.lens = append(a.lens, len(p))
		}
		m[p] = merged[p]
	}
	slices.SortFunc(a.lens, func(x, y int) int { return y - x })
	return a
}

// merge combines two rules for the same prefix: deny wins, else the higher grant.
func merge(x, y Access) Access {
	if x == AccessDeny || y == AccessDeny {
		return AccessDeny
	}
	return max(x, y)
}

// Allowed reports whether the token may do n.
func (a *Authorizer) Allowed(n Need) bool {
	if a.management {
		return true
	}
	switch n.Resource {
	case ResourceKey:
		return a.decide(n.Key).allows(n.Access)
	case ResourcePrefix:
		return a.coversPrefix(n.Key, n.Access)
	case ResourceCluster:
		return a.cluster.allows(n.Access)
	case ResourceACL:
		return a.acl.allows(n.Access)
	case ResourceSession:
		return a.session.allows(n.Access)
	}
	return false
}

// AllowedAll reports whether every need is allowed, and the first that is not.
func (a *Authorizer) AllowedAll(needs []Need) (Need, bool) {
	for _, n := range needs {
		if !a.Allowed(n) {
			return n, false
		}
	}
	return Need{}, true
}

// decide is the access the most specific rule gives key (AccessNone: no rule applies).
func (a *Authorizer) decide(key string) Access {
	for _, l := range a.lens {
		if l > len(key) {
			continue
		}
		if v, ok := a.byLen[l][key[:l]]; ok {
			return v
		}
	}
	return AccessNone
}

// coversPrefix is rule 3: the rule for prefix itself, and every longer rule inside the range.
func (a *Authorizer) coversPrefix(prefix string, need Access) bool {
	if !a.decide(prefix).allows(need) {
		return false
	}
	i := sort.SearchStrings(a.prefixes, prefix)
	for ; i < len(a.prefixes) && strings.HasPrefix(a.prefixes[i], prefix); i++ {
		if !a.access[i].allows(need) {
			return false
		}
	}
	return true
}
