package netlimit

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestListenerHoldsAtMostMaxConnections(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := make(chan net.Addr, 10)
	ln := New(inner, 2, func(a net.Addr) { refused <- a })
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first := <-accepted
	<-accepted
	require.Equal(t, 2, ln.Open())

	extra := dial()
	<-refused
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = extra.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "a connection over the bound is closed")

	require.NoError(t, first.Close())
	first.Close() // a second Close frees nothing more
	require.Equal(t, 1, ln.Open())
	dial()
	<-accepted
	require.Equal(t, 2, ln.Open())
}
