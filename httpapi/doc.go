// Package httpapi is raftkv's HTTP API (v1): it owns routing, request decoding, input validation and the
// one mapping from errors to HTTP status codes and JSON error codes (see errors.go and docs/design.md).
//
// It never touches Raft, the FSM or the network between nodes: it declares the Store interface it needs
// and asks it. It imports github.com/raftkv/raftkv/store for types and sentinel errors only, and never
// github.com/hashicorp/raft. Every input is validated before the store is called, so a rejected request
// has changed nothing.
package httpapi
