// Package loadgen is the load generator shared by every benchmark target: `raftkv bench` drives raftkv's
// HTTP API with it, and the comparison in bench/etcd drives etcd (through clientv3) and a bare net/http
// ceiling with the very same runner, so differences in the numbers come from the systems, not the tools.
//
// It owns the closed-loop workers (each sends one request, waits for the answer, sends the next), the
// warmup and measurement windows, key and value generation, pre-population before reads, the latency
// histogram, live progress, and the result with its text and JSON renderings. It knows nothing about any
// wire protocol: a Target does the request, and a TargetFactory decides which node each worker talks to.
package loadgen
