// Package metrics owns a node's Prometheus registry: the raftkv_ metrics the store and the HTTP API
// report through small observer interfaces, the state read from the store at scrape time, the Go
// runtime and process collectors, and hashicorp/raft's, raft-boltdb's and memberlist's own go-metrics,
// bridged into the same registry rather than counted a second time.
//
// It never keeps package-level state: each node builds its own Node. The one exception is forced on
// it by go-metrics, whose libraries report to a process-wide sink; BridgeGoMetrics installs that sink
// and is called once, by the process that runs the node (cmd/raftkv).
package metrics
