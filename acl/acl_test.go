package acl

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// stateWith builds a state holding the policies and one token using all of them; it returns the
// token's secret.
func stateWith(t testing.TB, policies ...*Policy) (*State, string) {
	t.Helper()
	s := NewState()
	var names []string
	var err error
	for i, p := range policies {
		s, err = s.Apply(SetPolicyCommand(p), uint64(i+1))
		require.NoError(t, err)
		names = append(names, p.Name)
	}
	tok, secret, err := NewToken(rand.Reader, "test", names, false)
	require.NoError(t, err)
	s, err = s.Apply(CreateTokenCommand(tok), 100)
	require.NoError(t, err)
	return s, secret
}

func authz(t testing.TB, policies ...*Policy) *Authorizer {
	t.Helper()
	s, secret := stateWith(t, policies...)
	a, err := s.Resolve(secret)
	require.NoError(t, err)
	return a
}

func key(k string, a Access) Need    { return Need{Resource: ResourceKey, Key: k, Access: a} }
func prefix(p string, a Access) Need { return Need{Resource: ResourcePrefix, Key: p, Access: a} }

func TestDecisionTable(t *testing.T) {
	p := &Policy{Name: "p", Keys: []KeyRule{
		{"", AccessRead},
		{"app/", AccessWrite},
		{"app/secret/", AccessDeny},
		{"app/secret/public", AccessRead},
		{"logs/", AccessList},
		{"logs/audit/", AccessRead},
	}, Cluster: AccessRead}
	a := authz(t, p)
	for _, c := range []struct {
		need Need
		want bool
	}{
		{key("x", AccessRead), true},   // "" read
		{key("x", AccessWrite), false}, // read is not write
		{key("x", AccessList), false},  // read does not include list
		{key("app/a", AccessWrite), true},
		{key("app/a", AccessList), true}, // write includes list and read
		{key("app", AccessWrite), false}, // "app" is not under "app/": "" decides
		{key("app/secret/k", AccessRead), false},
		{key("app/secret/public", AccessRead), true},     // more specific grant beats a shorter deny
		{key("app/secret/public/x", AccessWrite), false}, // ... but only the access it grants
		{key("app/secret/publicity", AccessRead), true},  // prefixes are bytes, not path segments
		{prefix("app/", AccessList), false},              // the range holds app/secret/
		{prefix("app/a", AccessWrite), true},             // no rule inside app/a…
		{prefix("app/secret/public", AccessRead), true},  // range fully under a read rule
		{prefix("app/secret/", AccessRead), false},       // deny at its own prefix
		{prefix("logs/", AccessList), false},             // logs/audit/ only read: range not covered
		{prefix("logs/x", AccessList), true},             //
		{prefix("", AccessRead), false},                  // the whole space holds a deny
		{prefix("zzz", AccessRead), true},                // "" read covers it
		{Need{Resource: ResourceCluster, Access: AccessRead}, true},
		{Need{Resource: ResourceCluster, Access: AccessWrite}, false},
		{Need{Resource: ResourceACL, Access: AccessRead}, false}, // no rule: default deny
	} {
		require.Equal(t, c.want, a.Allowed(c.need), "%+v", c.need)
	}
}

func TestDenyBeatsAtEqualSpecificityAndGrantsMerge(t *testing.T) {
	a := authz(t,
		&Policy{Name: "a", Keys: []KeyRule{{"k/", AccessWrite}, {"r/", AccessRead}}, Cluster: AccessWrite},
		&Policy{Name: "b", Keys: []KeyRule{{"k/", AccessDeny}, {"r/", AccessList}}, Cluster: AccessDeny},
	)
	require.False(t, a.Allowed(key("k/x", AccessRead)), "deny and write on the same prefix: deny")
	require.True(t, a.Allowed(key("r/x", AccessList)), "read and list on the same prefix: the higher grant")
	require.False(t, a.Allowed(Need{Resource: ResourceCluster, Access: AccessRead}), "cluster deny wins")
}

func TestNoRulesDeniesEverythingManagementAllowsEverything(t *testing.T) {
	a := authz(t, &Policy{Name: "empty"})
	for _, n := range []Need{key("a", AccessRead), prefix("", AccessRead), {Resource: ResourceCluster, Access: AccessRead}, {Resource: ResourceACL, Access: AccessRead}} {
		require.False(t, a.Allowed(n))
	}
	s := NewState()
	tok, secret, err := NewToken(rand.Reader, "", nil, true)
	require.NoError(t, err)
	s, err = s.Apply(BootstrapCommand(tok), 1)
	require.NoError(t, err)
	m, err := s.Resolve(secret)
	require.NoError(t, err)
	require.True(t, m.Management())
	require.True(t, m.Allowed(prefix("", AccessWrite)))
	require.True(t, m.Allowed(Need{Resource: ResourceACL, Access: AccessWrite}))
}

func TestBootstrapOnceAndTokenLifecycle(t *testing.T) {
	s := NewState()
	t1, secret1, err := NewToken(rand.Reader, "", nil, true)
	require.NoError(t, err)
	s, err = s.Apply(BootstrapCommand(t1), 5)
	require.NoError(t, err)
	require.True(t, s.Bootstrapped())
	t2, _, err := NewToken(rand.Reader, "", nil, true)
	require.NoError(t, err)
	_, err = s.Apply(BootstrapCommand(t2), 6)
	require.ErrorIs(t, err, ErrBootstrapped)

	tok, _, err := NewToken(rand.Reader, "", []string{"nope"}, false)
	require.NoError(t, err)
	_, err = s.Apply(CreateTokenCommand(tok), 7)
	require.ErrorIs(t, err, ErrNotFound, "a token naming a missing policy is refused")

	s, err = s.Apply(DeleteTokenCommand(t1.AccessorID), 8)
	require.NoError(t, err)
	_, err = s.Resolve(secret1)
	require.ErrorIs(t, err, ErrUnauthenticated, "a deleted token no longer resolves")
	_, err = s.Apply(DeleteTokenCommand(t1.AccessorID), 9)
	require.ErrorIs(t, err, ErrNotFound)
	require.True(t, s.Bootstrapped(), "deleting the bootstrap token does not allow a second bootstrap")

	_, err = s.Resolve("")
	require.ErrorIs(t, err, ErrUnauthenticated)
	_, err = s.Resolve("rkv_guess")
	require.ErrorIs(t, err, ErrUnauthenticated)
}

func TestPolicyChangeTakesEffectAndSignals(t *testing.T) {
	s, secret := stateWith(t, &Policy{Name: "p", Keys: []KeyRule{{"a/", AccessRead}}})
	live := NewLive()
	live.Store(s)
	a, err := live.Load().Resolve(secret)
	require.NoError(t, err)
	require.True(t, a.Allowed(prefix("a/", AccessRead)))
	changed := live.Load().Changed()

	n, err := s.Apply(SetPolicyCommand(&Policy{Name: "p", Keys: []KeyRule{{"a/", AccessDeny}}}), 200)
	require.NoError(t, err)
	live.Store(n)
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by a new state")
	}
	a, err = live.Load().Resolve(secret)
	require.NoError(t, err)
	require.False(t, a.Allowed(prefix("a/", AccessRead)))
	p, ok := n.Policy("p")
	require.True(t, ok)
	require.Equal(t, uint64(1), p.CreateIndex)
	require.Equal(t, uint64(200), p.ModIndex)

	n, err = n.Apply(DeletePolicyCommand("p"), 201)
	require.NoError(t, err)
	a, err = n.Resolve(secret)
	require.NoError(t, err, "the token outlives its policy")
	require.False(t, a.Allowed(key("a/x", AccessRead)), "and a deleted policy grants nothing")
}

func TestValidation(t *testing.T) {
	for _, p := range []*Policy{
		{Name: ""},
		{Name: "bad name"},
		{Name: "management"},
		{Name: "p", Keys: []KeyRule{{"a", AccessNone}}},
		{Name: "p", Keys: []KeyRule{{"a", AccessRead}, {"a", AccessWrite}}},
		{Name: "p", Cluster: AccessList},
		{Name: "p", Keys: []KeyRule{{"\xff", AccessRead}}},
	} {
		require.ErrorIs(t, p.Validate(), ErrInvalid, "%+v", p)
	}
	_, err := ParsePolicy([]byte(`{"name":"p","keys":[{"prefix":"a/","access":"writ"}]}`))
	require.ErrorIs(t, err, ErrInvalid)
	_, err = ParsePolicy([]byte(`{"name":"p","rules":[]}`))
	require.ErrorIs(t, err, ErrInvalid, "unknown fields are refused")
	p, err := ParsePolicy([]byte(`{"name":"p","keys":[{"prefix":"a/","access":"list"}],"cluster":"read"}`))
	require.NoError(t, err)
	require.Equal(t, AccessList, p.Keys[0].Access)
}

func TestCommandAndSnapshotRoundTrip(t *testing.T) {
	s, secret := stateWith(t, &Policy{Name: "p", Keys: []KeyRule{{"a/", AccessRead}}, Cluster: AccessWrite})
	boot, _, err := NewToken(rand.Reader, "", nil, true)
	require.NoError(t, err)
	s, err = s.Apply(BootstrapCommand(boot), 300)
	require.NoError(t, err)

	for _, c := range []Command{BootstrapCommand(boot), DeleteTokenCommand("x"), SetPolicyCommand(&Policy{Name: "q"}), DeletePolicyCommand("q")} {
		got, err := DecodeCommand(c.Encode())
		require.NoError(t, err)
		require.Equal(t, c, got)
	}
	_, err = DecodeCommand([]byte{2, '{', '}'})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = DecodeCommand(append([]byte{1}, `{"kind":1,"extra":1}`...))
	require.ErrorIs(t, err, ErrInvalid)

	b, err := s.MarshalBinary()
	require.NoError(t, err)
	r, err := UnmarshalState(b)
	require.NoError(t, err)
	b2, err := r.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, b, b2, "same state, same bytes")
	require.True(t, r.Bootstrapped())
	a, err := r.Resolve(secret)
	require.NoError(t, err)
	require.True(t, a.Allowed(key("a/b", AccessRead)))
	require.Len(t, r.Tokens(), 2)
	require.NotContains(t, string(b), secret, "only hashes are stored")

	_, err = UnmarshalState([]byte(`{"bootstrapped":true,"tokens":[null],"policies":[]}`))
	require.ErrorIs(t, err, ErrInvalid)
}

func TestSecretFromHeader(t *testing.T) {
	require.Equal(t, "s1", SecretFromHeader("Bearer s1", ""))
	require.Equal(t, "s1", SecretFromHeader("bearer  s1 ", ""))
	require.Equal(t, "s2", SecretFromHeader("Bearer s1", "s2"))
	require.Equal(t, "", SecretFromHeader("Basic abc", ""))
	require.Equal(t, "", SecretFromHeader("", ""))
}

// BenchmarkDecision is the cost the ACL check adds to a request: resolving the secret (one SHA-256 and
// a map lookup; the compiled Authorizer is cached per state) and deciding one key and one range.
func BenchmarkDecision(b *testing.B) {
	for _, n := range []int{10, 1000} {
		p := &Policy{Name: "p"}
		for i := range n {
			p.Keys = append(p.Keys, KeyRule{fmt.Sprintf("tenant-%04d/", i), AccessWrite})
		}
		p.Keys = append(p.Keys, KeyRule{"tenant-0005/private/", AccessDeny})
		s, secret := stateWith(b, p)
		b.Run(fmt.Sprintf("rules=%d/resolve+key", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a, err := s.Resolve(secret)
				if err != nil || !a.Allowed(key("tenant-0007/users/42", AccessWrite)) {
					b.Fatal("denied")
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/key", n), func(b *testing.B) {
			a, _ := s.Resolve(secret)
			b.ReportAllocs()
			for b.Loop() {
				if !a.Allowed(key("tenant-0007/users/42", AccessWrite)) {
					b.Fatal("denied")
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/prefix", n), func(b *testing.B) {
			a, _ := s.Resolve(secret)
			b.ReportAllocs()
			for b.Loop() {
				if a.Allowed(prefix("tenant-0005/", AccessList)) {
					b.Fatal("allowed a range holding a deny")
				}
			}
		})
	}
}
