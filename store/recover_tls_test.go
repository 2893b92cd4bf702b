package store

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/tlsutil/tlstest"
	"github.com/raftkv/raftkv/transport"
)

// The offline recovery probe has no peer certificate: an old voter whose node port runs mutual TLS
// refuses it at once, and must count as alive, or recovery would split a cluster that still decides.
func TestRecoveryProbeCountsAVoterBehindMutualTLSAsAlive(t *testing.T) {
	src := tlstest.NodeCerts(t)("n2")
	mux, err := transport.ListenTLS("127.0.0.1:0", "", src, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer mux.Close()

	servers := []raft.Server{
		{ID: "n1", Suffrage: raft.Voter, Address: "127.0.0.1:1"},
		{ID: "n2", Suffrage: raft.Voter, Address: raft.ServerAddress(mux.Addr().String())},
		{ID: "n3", Suffrage: raft.Voter, Address: "127.0.0.1:1"}, // nothing listens
	}
	answering, err := probeServers(context.Background(), servers, "n1", 2*time.Second, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, []string{"n2"}, answering)
}
