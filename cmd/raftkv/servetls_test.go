package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExposuresNameEveryUnprotectedPortBeyondLoopback(t *testing.T) {
	loop := &serveFlags{httpAddr: "127.0.0.1:7000", raftAddr: "[::1]:7001", gossipAddr: "localhost:7002"}
	assert.Empty(t, exposures(loop, false, false, false), "make run stays quiet on loopback")

	open := &serveFlags{httpAddr: "0.0.0.0:7000", raftAddr: "10.0.0.5:7001", gossipAddr: ":7002"}
	got := exposures(open, false, false, false)
	assert.Len(t, got, 3)
	assert.Contains(t, strings.Join(got, "\n"), "HTTP API on 0.0.0.0:7000")
	assert.Contains(t, strings.Join(got, "\n"), "node port on 10.0.0.5:7001")
	assert.Contains(t, strings.Join(got, "\n"), "gossip on :7002")
	assert.Empty(t, exposures(open, true, true, true))
	assert.Len(t, exposures(open, true, false, true), 1)
}

func TestGossipKeyFlags(t *testing.T) {
	f := &tlsFlags{gossipKey: "not base64!"}
	_, err := f.gossipKeys()
	assert.Error(t, err)
	f = &tlsFlags{gossipKey: "AAAAAAAAAAAAAAAAAAAAAA=="} // 16 bytes
	keys, err := f.gossipKeys()
	assert.NoError(t, err)
	assert.Len(t, keys, 1)
	f = &tlsFlags{gossipKey: "AAAA"}
	_, err = f.gossipKeys()
	assert.ErrorContains(t, err, "16, 24 or 32 bytes")
	f = &tlsFlags{gossipKey: "AAAAAAAAAAAAAAAAAAAAAA==", gossipKeyFile: "/x"}
	_, err = f.gossipKeys()
	assert.ErrorContains(t, err, "not both")
}
