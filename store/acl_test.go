package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/fsm"
)

// A follower that forwarded an ACL change gets the leader's refusal back as the same sentinel.
func TestApplyResultCarriesACLError(t *testing.T) {
	for _, e := range []error{acl.ErrBootstrapped, acl.ErrNotFound, acl.ErrExists, acl.ErrInvalid} {
		got, err := decodeResult(encodeResult(fsm.Result{Index: 7, ACLErr: e}))
		require.NoError(t, err)
		require.Equal(t, uint64(7), got.Index)
		require.ErrorIs(t, got.ACLErr, e)
		require.Equal(t, e.Error(), got.ACLErr.Error())
	}
	got, err := decodeResult(encodeResult(fsm.Result{Index: 8}))
	require.NoError(t, err)
	require.NoError(t, got.ACLErr)
	_, err = decodeResult(append(encodeResult(fsm.Result{Index: 7, ACLErr: acl.ErrNotFound}), 'x'))
	require.Error(t, err)
}
