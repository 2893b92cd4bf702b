// Package chaos is raftkv's Jepsen-style fault-injection suite: every scenario starts a fresh cluster of
// raftkv containers (the image built from this checkout by TestMain), runs a concurrent workload from
// the host against every node, injects one kind of fault (or several, at random), heals, waits for the
// cluster to recover, and checks three things:
//
//  1. the recorded history of get/put/cas/delete is linearizable (test/lincheck, porcupine), with
//     writes of unknown outcome recorded as such; an illegal history leaves its visualization under
//     test/artifacts;
//  2. no acknowledged write is lost: a separate append-only "ledger" workload writes unique keys, and
//     every acknowledged one must be readable, with its value and index, after healing;
//  3. the cluster recovers within the scenario's bound: one leader that every node agrees on, every
//     expected member a voter, alive in gossip at its current address, and every node ready.
//
// What it owns: the containers, networks, volumes and image it creates (all labelled
// raftkv-chaos=<run id>; swept at start, at the end, on Ctrl-C) and the firewall rules and queueing
// disciplines it installs inside those containers' network namespaces (never in the host's). It talks to
// raftkv only through the docker CLI and the nodes' HTTP APIs, published on 127.0.0.1.
//
// Modes: the default short pass (each nemesis once, in `make test`), or RAFTKV_CHAOS=long (`make
// chaos`): several minutes of repeated faults per scenario. See the README in this directory.
package chaos
