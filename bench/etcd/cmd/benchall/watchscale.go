package main

// watchscale.go: the watch rows at issue 12's scale, after the scaled-down fan-out row.
//
//   - fan-out at scale: 1,000 watchers on one prefix spread over the nodes while 1,000 puts/s land.
//     Every put under the watched prefix reaches 1,000 watchers, so 1,000 of them per second would be a
//     million deliveries per second: beyond a 2-core machine for either system (and for this load
//     generator, which parses every event). So 1 in --scale-watch-every (50) of the puts lands under the
//     prefix and the others beside it: 1,000 puts/s of write load, 20 × 1,000 = 20,000 deliveries per
//     second, and a check that writes beside a prefix cost its watchers nothing (consul#410, #9449).
//   - idle watches: --idle-watches (10,000) watches on one prefix nobody writes, all on the first node;
//     that process's resident memory before and after, per watch. raftkv serves each watch as one
//     HTTP/1.1 stream on a connection of its own, which is what net/http does for Server-Sent Events;
//     etcd's clientv3 multiplexes every watch of a client on one gRPC stream, as its users get it.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

const bytesPerMiB = 1 << 20

// runWatchScale runs the scaled rows the flags ask for; a row that fails is reported, the next runs.
func runWatchScale(ctx context.Context, sys system, sc scenarioClient, f compareFlags, rep *report) {
	sf := f.scenario
	if sf.scaleWatchers > 0 && ctx.Err() == nil {
		if err := runWatchFanout(ctx, sys, sc, f, fanout{sf.scaleWatchers, sf.scaleWatchRate, sf.scaleWatchEvery}, rep); err != nil {
			fmt.Printf("   watch fan-out at scale: failed: %v\n", err)
			rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s watch fan-out at scale: %v", sys.name(), err))
		}
	}
	if sf.idleWatches > 0 && ctx.Err() == nil {
		if err := runIdleWatches(ctx, sys, sc, sf.idleWatches, rep); err != nil {
			fmt.Printf("   idle watches: failed: %v\n", err)
			rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s idle watches: %v", sys.name(), err))
		}
	}
}

// runIdleWatches opens n watches on the first node and reports what they cost it in resident memory.
func runIdleWatches(ctx context.Context, sys system, sc scenarioClient, n int, rep *report) error {
	name := fmt.Sprintf("memory: %d idle watches on one node", n)
	pid := sys.processes()[0].pid()
	before, err := procMemory(pid)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ready atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	// Opened a few dozen at a time: the row measures holding watches, not a connection storm.
	gate := make(chan struct{}, 32)
	for range n {
		wg.Add(1)
		gate <- struct{}{}
		go func() {
			defer wg.Done()
			released := false
			release := func() {
				if !released {
					released = true
					<-gate
				}
			}
			defer release()
			err := sc.watch(wctx, 0, "idle/", func() { ready.Add(1); release() }, func([]byte) {})
			if err != nil && wctx.Err() == nil {
				errs <- err
			}
		}()
		select {
		case err := <-errs:
			return fmt.Errorf("a watch failed while opening %d: %w", n, err)
		default:
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for ready.Load() < int64(n) {
		select {
		case err := <-errs:
			return fmt.Errorf("a watch failed while opening %d: %w", n, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d watches established in 2 min", ready.Load(), n)
		}
	}
	// Let the server finish whatever opening them started (buffers, first progress ticks) before reading.
	time.Sleep(2 * time.Second)
	after, err := procMemory(pid)
	if err != nil {
		return err
	}
	cancel()
	wg.Wait()
	delta := float64(after.RSS) - float64(before.RSS)
	s := sys.name()
	rep.addMeasure(name, "RSS before", "MiB", true, s, round(float64(before.RSS)/bytesPerMiB, 1))
	rep.addMeasure(name, "RSS with the watches open", "MiB", true, s, round(float64(after.RSS)/bytesPerMiB, 1))
	rep.addMeasure(name, "RSS per watch", "KiB", true, s, round(delta/float64(n)/1024, 2))
	fmt.Printf("   %-36s RSS %.0f → %.0f MiB, %.1f KiB per watch\n", name, float64(before.RSS)/bytesPerMiB, float64(after.RSS)/bytesPerMiB, delta/float64(n)/1024)
	return nil
}
