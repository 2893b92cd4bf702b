package fsm

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/acl"
)

func (a *applier) aclCmd(c acl.Command) Result {
	return a.apply(Command{Op: OpACL, Value: c.Encode()})
}

func TestACLCommandsApplyAndTakeWriteIndexes(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")
	boot, secret, err := acl.NewToken(rand.Reader, "", nil, true)
	require.NoError(t, err)
	res := a.aclCmd(acl.BootstrapCommand(boot))
	require.NoError(t, res.Err)
	require.NoError(t, res.ACLErr)
	require.Equal(t, a.index, res.Index, "an acl command is a write with its own index")
	require.True(t, a.f.ACL().Load().Bootstrapped())
	_, err = a.f.ACL().Load().Resolve(secret)
	require.NoError(t, err)

	again, _, err := acl.NewToken(rand.Reader, "", nil, true)
	require.NoError(t, err)
	res = a.aclCmd(acl.BootstrapCommand(again))
	require.ErrorIs(t, res.ACLErr, acl.ErrBootstrapped, "bootstrap happens once per cluster")

	res = a.apply(Command{Op: OpACL, Value: []byte{1, '{'}})
	require.ErrorIs(t, res.ACLErr, acl.ErrInvalid)

	_, err = DecodeCommand(Command{Op: OpACL, Key: "x", Value: acl.DeleteTokenCommand("a").Encode()}.Encode())
	require.ErrorIs(t, err, ErrInvalidCommand, "an acl command has no key")
}

func TestSnapshotCarriesACLStateAndStaysV4WithoutIt(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")
	plain := persist(t, a.f)
	require.Equal(t, byte(snapshotVersionV4), plain[len(snapshotMagic)], "no ACL state: the previous build's format")

	res := a.aclCmd(acl.SetPolicyCommand(&acl.Policy{Name: "p", Keys: []acl.KeyRule{{Prefix: "a/", Access: acl.AccessRead}}}))
	require.NoError(t, res.ACLErr)
	tok, secret, err := acl.NewToken(rand.Reader, "", []string{"p"}, false)
	require.NoError(t, err)
	require.NoError(t, a.aclCmd(acl.CreateTokenCommand(tok)).ACLErr)

	b := persist(t, a.f)
	require.Equal(t, byte(snapshotVersion), b[len(snapshotMagic)])
	require.NotContains(t, string(b), secret)
	f := New()
	require.NoError(t, f.Restore(io.NopCloser(bytes.NewReader(b))))
	az, err := f.ACL().Load().Resolve(secret)
	require.NoError(t, err)
	require.True(t, az.Allowed(acl.Need{Resource: acl.ResourceKey, Key: "a/x", Access: acl.AccessRead}))
	require.Equal(t, b, persist(t, f), "same state, same bytes")

	// An older (v4) snapshot restores to an empty ACL state.
	h := New()
	require.NoError(t, h.Restore(io.NopCloser(bytes.NewReader(plain))))
	_, err = h.ACL().Load().Resolve(secret)
	require.ErrorIs(t, err, acl.ErrUnauthenticated)
}
