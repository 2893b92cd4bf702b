// Package transport owns the bytes between nodes: one TCP port per node that carries both the Raft
// stream and the internal RPC (the first byte of each connection says which), the RPC client and server
// themselves, and the gossip layer (memberlist) with the metadata each node publishes.
//
// It knows nothing of keys, commands or Raft semantics: the RPC moves opaque request and response bytes
// for a named method, and gossip reports who is alive. The store gives those bytes their meaning.
package transport
