package fsm

import (
	"encoding/binary"
	"fmt"
)

// A batch is one log entry that carries several commands, so that writes arriving together share
// one entry's costs (log encoding, a BoltDB put on every node, an AppendEntries slot, a future).
// Its commands apply in order, each with its own write index (see FSM.LastWriteIndex).
//
// Encoding, format version 2 (version 1 is a single Command):
//
//	version  1 byte   = 2
//	count    uvarint  >= 1
//	count ×  uvarint length, then a version-1 command encoding
//
// Varints must be minimal, as in a Command.
const batchVersion byte = 2

// Log formats: what a node's Apply understands. A node that knows only an older format would take a
// newer entry for an invalid command and skip its writes, so the store writes an entry of a format only
// once every member advertises it (gossip meta "log").
const (
	FormatCommand = 1 // single commands
	FormatBatch   = 2 // batch entries too
	// FormatSealed: every entry the store writes is sealed in a checksum (envelope.go), and the ops
	// from OpCheckpoint on may appear. Older unsealed entries still apply.
	FormatSealed = 3
	// FormatSessions: OpSession commands and session puts in transactions (session.go) may appear.
	FormatSessions = 4
	// FormatIdempotent: OpIdempotent may wrap puts, deletes and transactions. It is the same format
	// as sessions (both came in one release). Builds between the sealed format and this one advertise
	// 3 but either do not know OpIdempotent at all or wrap puts and deletes only; either would skip a
	// wrapped write the others apply, so no wrapper is proposed before every member advertises 4.
	FormatIdempotent = 4
	// FormatACL: OpACL commands (the replicated ACL state) may appear.
	FormatACL = 5
	// FormatIdempotentSessions: OpIdempotent may also wrap a client's session command (create, renew,
	// destroy, session put, acquire, release). A build at 5 refuses such a wrapper as an invalid
	// command, and its snapshot reader refuses the records they leave (flags 8 and 16).
	FormatIdempotentSessions = 6
	// LogFormat is the newest format this build applies.
	LogFormat = FormatIdempotentSessions
)

// IsBatch reports whether an entry's data claims the batch format; DecodeBatch checks the rest.
func IsBatch(b []byte) bool { return len(b) > 0 && b[0] == batchVersion }

// AppendBatch appends the batch encoding of cmds (each a Command encoding) to dst.
func AppendBatch(dst []byte, cmds [][]byte) []byte {
	dst = append(dst, batchVersion)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for _, c := range cmds {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		dst = append(dst, c...)
	}
	return dst
}

// BatchLen is the size of the batch encoding of commands whose encodings total size bytes.
func BatchLen(count, size int) int {
	return 1 + uvarintLen(uint64(count)) + count*binary.MaxVarintLen32 + size
}

// DecodeBatch splits a batch into its commands' encodings, which alias b. It checks the framing
// strictly (errors wrap ErrInvalidCommand) but not the commands themselves: each is decoded, and may
// be rejected, on its own, so one bad command cannot hide the others' outcomes.
func DecodeBatch(b []byte) ([][]byte, error) {
	if !IsBatch(b) {
		return nil, invalidCommand("not a batch")
	}
	n, rest, err := readUvarint(b[1:], "batch count")
	if err != nil {
		return nil, err
	}
	// Every command takes at least a length byte and a header, which bounds a corrupt count.
	if n == 0 || n > uint64(len(rest))/(1+headerLen) {
		return nil, invalidCommand("batch count %d does not fit %d bytes", n, len(rest))
	}
	cmds := make([][]byte, n)
	for i := range cmds {
		if cmds[i], rest, err = readBytes(rest, "batched command", "batched command length"); err != nil {
			return nil, fmt.Errorf("command %d of %d: %w", i+1, n, err)
		}
	}
	if len(rest) != 0 {
		return nil, invalidCommand("%d trailing bytes after a batch of %d", len(rest), n)
	}
	return cmds, nil
}
