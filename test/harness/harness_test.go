package harness

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFreePortsAreDistinctAndFree(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 30; i++ {
		p, err := FreePort()
		require.NoError(t, err)
		require.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(p)))
		require.NoError(t, err)
		l.Close()
	}
}

func itoa(p int) string { return (&net.TCPAddr{Port: p}).String()[1:] }

func TestOutcome(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		r    Response
		want Outcome
	}{
		{Response{Status: 200}, Applied},
		{Response{Status: 409, Code: "cas_mismatch"}, CASFailed},
		{Response{Status: 413, Code: "value_too_large"}, NoEffect},
		{Response{Status: 503, Code: "no_leader"}, NoEffect},
		{Response{Status: 503, Code: "timeout"}, NoEffect},
		{Response{Status: 503, Code: "not_ready"}, NoEffect},
		{Response{Status: 503, Code: "shutting_down"}, NoEffect},
		{Response{Status: 503, Code: "indeterminate"}, Indeterminate},
		{Response{Status: 500, Code: "internal"}, Indeterminate},
		{Response{Err: dial, NotSent: notSent(dial)}, NoEffect},
		{Response{Err: errors.New("context deadline exceeded")}, Indeterminate},
	} {
		assert.Equal(t, tc.want, tc.r.Outcome(), "%+v", tc.r)
	}
}

func TestPollStopsOnPermanentError(t *testing.T) {
	start := time.Now()
	calls := 0
	err := Poll(10*time.Second, func() error {
		calls++
		return Permanent(errors.New("gone"))
	})
	require.Error(t, err)
	assert.Equal(t, 1, calls)
	assert.Less(t, time.Since(start), time.Second)
}
