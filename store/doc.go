// Package store is the only owner of the Raft instance, its BoltDB log and its snapshots. It opens
// or bootstraps the node, applies writes (forwarding them to the leader when this node is not it),
// serves linearizable reads through a batched read index, and keeps the Raft configuration in step
// with gossip membership while this node leads.
//
// It never speaks HTTP to clients: httpapi calls its methods and maps its sentinel errors.
package store
