package store

// Large writes and small ones share the leader's log and the follower's forwarding RPCs, but not a
// queue position. Batches were cut from the head of one FIFO queue, so a 100 B write that arrived behind
// 64 writes of 1 MiB waited for all 64 to commit, one entry at a time: on a follower small-write latency
// went from ~75 ms to 3.2 s (issue 11 item 9). Now every batch takes the waiting small writes first and
// then large ones within their own byte budget, so a small write waits for at most the one batch in
// flight, whatever amount of large data is queued.

// largeWrite: an encoded command at least this long is a large write. 16 KiB is far above a typical
// key-value write (the bench's 100 B values, config blobs) and far below the 1 MiB value limit.
const largeWrite = 16 << 10

// pickBatch takes the next batch out of queue (oldest first) and returns it and what stays queued, both
// in queue order. Only items for which eligible is true are considered. A batch holds at most maxCount
// items: small ones (under largeWrite bytes) while they total at most maxBytes, then large ones while
// they total at most maxBytes, except that the oldest large one always rides, even alone over the bound,
// so that a steady stream of small writes never starves a large one. A batch is therefore at most
// 2×maxBytes, or maxBytes plus one command larger than that.
func pickBatch[T any](queue []T, size func(T) int, eligible func(T) bool, maxCount, maxBytes int) (batch, rest []T) {
	take := make([]bool, len(queue))
	n, smallBytes := 0, 0
	for i, w := range queue {
		if n == maxCount {
			break
		}
		if s := size(w); eligible(w) && s < largeWrite && (n == 0 || smallBytes+s <= maxBytes) {
			take[i], smallBytes, n = true, smallBytes+s, n+1
		}
	}
	largeBytes, larges := 0, 0
	for i, w := range queue {
		if n == maxCount {
			break
		}
		if s := size(w); eligible(w) && s >= largeWrite && (larges == 0 || largeBytes+s <= maxBytes) {
			take[i], largeBytes, larges, n = true, largeBytes+s, larges+1, n+1
		}
	}
	for i, w := range queue {
		if take[i] {
			batch = append(batch, w)
		} else {
			rest = append(rest, w)
		}
	}
	return batch, rest
}
