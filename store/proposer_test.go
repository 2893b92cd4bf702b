package store

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

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
	p := &proposer{}
	ws := queued(p, 3)
	first := p.takeLocked()
	require.Equal(t, ws, first)
	for _, w := range first {
		require.True(t, w.taken)
	}
	require.Empty(t, p.queue)
	require.Nil(t, p.takeLocked(), "nothing waits")

	more := queued(p, 2)
	require.Equal(t, more, p.takeLocked())
	later := queued(p, 1)
	require.Nil(t, p.takeLocked(), "every slot is busy")
	require.False(t, later[0].taken)

	require.Equal(t, later, p.release(), "a freed slot goes to the next waiting write")
	require.Equal(t, proposalsInFlight, p.inFlight)
}

func TestProposerBoundsABatch(t *testing.T) {
	p := &proposer{}
	queued(p, maxBatchCommands+5)
	require.Len(t, p.takeLocked(), maxBatchCommands)
	require.Len(t, p.queue, 5)

	p = &proposer{}
	big := newProposal(bytes.Repeat([]byte("x"), maxBatchBytes+1))
	p.queue = []*proposal{big}
	ws := queued(p, 1)
	require.Equal(t, []*proposal{big}, p.takeLocked(), "a command over the byte bound goes alone")
	require.Equal(t, ws, p.takeLocked())
}
