package store

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/transport"
)

func batchingProposer() *proposer {
	p := &proposer{}
	p.format.Store(fsm.FormatBatch)
	return p
}

func queued(p *proposer, n int) []*proposal {
	var ws []*proposal
	for i := range n {
		w := newProposal([]byte(fmt.Sprint(i)))
		ws = append(ws, w)
		p.queue = append(p.queue, w)
	}
	return ws
}

func TestProposerTakesTheOldestWritesWhileASlotIsFree(t *testing.T) {
	p := batchingProposer()
	ws := queued(p, 3)
	first := p.takeLocked()
	require.Equal(t, ws, first)
	for _, w := range first {
		require.True(t, w.taken)
	}
	require.Empty(t, p.queue)
	require.Equal(t, 1, p.inFlight)

	p.inFlight = proposalsInFlight
	later := queued(p, 2)
	require.Nil(t, p.takeLocked(), "every slot is busy")
	require.False(t, later[0].taken)
	require.Equal(t, later, p.release(), "a freed slot goes to the waiting writes")
	require.Equal(t, proposalsInFlight, p.inFlight)

	require.Nil(t, p.release(), "nothing waits")
	require.Equal(t, proposalsInFlight-1, p.inFlight, "an empty take claims no slot")
}

func TestProposerBoundsABatch(t *testing.T) {
	p := batchingProposer()
	queued(p, maxBatchCommands+5)
	require.Len(t, p.takeLocked(), maxBatchCommands)
	require.Len(t, p.queue, 5)

	big := newProposal(bytes.Repeat([]byte("x"), maxBatchBytes+1))
	big2 := newProposal(bytes.Repeat([]byte("x"), largeWrite))
	p = batchingProposer()
	p.queue = []*proposal{big, big2}
	require.Equal(t, []*proposal{big}, p.takeLocked(), "a command over the byte bound goes as the only large one")
	require.Equal(t, []*proposal{big2}, p.release())
}

// Issue 11 item 9: 64 puts of 1 MiB queued ahead of a 100 B put made it wait for 64 commit rounds (3.2 s
// on a follower). Small writes go into the next entry, with at most maxBatchBytes of large ones, and
// the large ones keep their order.
func TestProposerTakesSmallWritesAheadOfLargeOnes(t *testing.T) {
	p := batchingProposer()
	var large []*proposal
	for range 64 {
		w := newProposal(bytes.Repeat([]byte("x"), 1<<20))
		large = append(large, w)
		p.queue = append(p.queue, w)
	}
	small := queued(p, 2)
	first := p.takeLocked()
	require.Equal(t, []*proposal{large[0], small[0], small[1]}, first, "queue order within the batch; one large write fits the budget")
	require.Equal(t, large[1:], p.queue)

	late := queued(p, 1)
	require.Equal(t, []*proposal{large[1], late[0]}, p.release(), "the small write that arrived meanwhile rides along")

	p = batchingProposer()
	p.queue = []*proposal{newProposal(bytes.Repeat([]byte("x"), largeWrite)), newProposal(bytes.Repeat([]byte("x"), largeWrite))}
	require.Len(t, p.takeLocked(), 2, "large writes share an entry within the byte bound")
}

func TestProposerSendsSingleCommandsUntilBatchingIsOn(t *testing.T) {
	p := &proposer{}
	ws := queued(p, 3)
	require.Equal(t, ws[:1], p.takeLocked())
	require.Equal(t, ws[1:2], p.release())
	p.format.Store(fsm.FormatBatch)
	require.Equal(t, ws[2:], p.release())
}

func TestClusterFormatIsTheOldestFormatOfEveryServerSeen(t *testing.T) {
	servers := map[raft.ServerID]raft.Server{"n1": {ID: "n1"}, "n2": {ID: "n2"}}
	member := func(id string, format int) transport.Member {
		return transport.Member{Meta: transport.Meta{ID: id, LogFormat: format}, State: transport.StateDead}
	}
	require.Equal(t, fsm.FormatBatch, clusterFormat(servers, []transport.Member{member("n1", 2), member("n2", 99), member("old", 0)}),
		"members outside the configuration do not count; dead ones do; a newer build counts as this one")
	require.Equal(t, 0, clusterFormat(servers, []transport.Member{member("n1", 2), member("n2", 0)}), "an older build")
	require.Equal(t, 0, clusterFormat(servers, []transport.Member{member("n1", 2)}), "a server gossip never saw")
}

// An idempotent write is refused, with the error that names why, until every member applies the
// format that knows the wrapper (a build between formats 3 and 4 would skip it and diverge).
func TestProposerRefusesIdempotentWritesBelowTheirFormat(t *testing.T) {
	idem := newProposal(fsm.Idempotent("k", fsm.Command{Op: fsm.OpPut, Key: "a"}.Encode()).Encode())
	plain := newProposal(fsm.Command{Op: fsm.OpPut, Key: "a"}.Encode())
	p := &proposer{}
	p.format.Store(fsm.FormatSealed)
	require.Equal(t, []*proposal{plain}, p.refuseUnsupported([]*proposal{idem, plain}))
	<-idem.done
	require.ErrorIs(t, idem.err, ErrIdempotencyUnsupported)

	idem = newProposal(fsm.Idempotent("k", fsm.Command{Op: fsm.OpPut, Key: "a"}.Encode()).Encode())
	p.format.Store(fsm.FormatIdempotent)
	require.Len(t, p.refuseUnsupported([]*proposal{idem, plain}), 2)
}
