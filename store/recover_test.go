package store

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecoverConfigurationNeedsThisNodeUniqueIDsAndAddresses(t *testing.T) {
	peers := func(p ...RecoverPeer) RecoverConfig { return RecoverConfig{NodeID: "n1", Peers: p} }
	conf, err := recoverConfiguration(peers(RecoverPeer{"n1", "10.0.0.1:7001"}, RecoverPeer{"n2", "10.0.0.2:7001"}))
	require.NoError(t, err)
	assert.Len(t, conf.Servers, 2)
	for name, cfg := range map[string]RecoverConfig{
		"without this node": peers(RecoverPeer{"n2", "10.0.0.2:7001"}),
		"duplicate id":      peers(RecoverPeer{"n1", "10.0.0.1:7001"}, RecoverPeer{"n1", "10.0.0.2:7001"}),
		"bad address":       peers(RecoverPeer{"n1", "10.0.0.1"}),
		"empty id":          peers(RecoverPeer{"n1", "10.0.0.1:7001"}, RecoverPeer{"", "10.0.0.2:7001"}),
	} {
		_, err := recoverConfiguration(cfg)
		assert.ErrorIs(t, err, ErrInvalid, name)
	}
}

func TestRecoverRefusesADirectoryThatIsNotANodes(t *testing.T) {
	_, err := Recover(t.Context(), RecoverConfig{DataDir: t.TempDir(), NodeID: "n1", Peers: []RecoverPeer{{"n1", "127.0.0.1:7001"}}})
	assert.ErrorIs(t, err, ErrInvalid)
}
