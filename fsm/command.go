package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Op is the kind of change a Command makes.
type Op uint8

// The ops. Their numeric values are part of the log format: never renumber or reuse one.
const (
	OpPut       Op = 1
	OpDelete    Op = 2
	OpSetMember Op = 3 // records a member's data-dir id: Key = member id, Value = data id
	// OpNoop changes nothing. A new leader commits one so that its term has an entry the FSM sees,
	// which linearizable reads wait for.
	OpNoop Op = 4
	// OpIdempotent wraps a client write (put, delete, transaction) with an idempotency key (see
	// idempotent.go). Ops 10–13 are idempotency's; only 10 is used. It is proposed only once every
	// member applies FormatIdempotent.
	OpIdempotent Op = 10
	// OpACL changes the ACL state: Value is an encoded acl.Command. Ops 24–27 are the ACL system's; only
	// 24 is used. It is proposed only once every member applies FormatACL.
	OpACL Op = 24
)

func (o Op) valid() bool {
	return (o >= OpPut && o <= OpNoop) || o == OpTxn || o == OpIdempotent || o == OpSession || o == OpACL
}

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpSetMember:
		return "set-member"
	case OpNoop:
		return "noop"
	case OpTxn:
		return "txn"
	case OpIdempotent:
		return "idempotent"
	case OpSession:
		return "session"
	case OpACL:
		return "acl"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Command is one write, carried by exactly one Raft log entry.
type Command struct {
	Op    Op
	Key   string
	Value []byte // OpPut: the new value; OpSetMember: the data-dir id; OpDelete: unused

	// CAS makes an OpPut or OpDelete conditional: it applies only if the key's ModIndex equals
	// CASIndex, and CASIndex 0 means "only if the key is absent". CASIndex is not encoded
	// without CAS, and OpSetMember ignores both.
	CAS      bool
	CASIndex uint64

	// Txn is OpTxn's transaction, decoded from Value by DecodeCommand (Encode writes Value only).
	Txn *Txn
	// Session is OpSession's command, decoded from Value likewise.
	Session *SessionCmd
}

// ErrInvalidCommand is wrapped by every DecodeCommand error.
var ErrInvalidCommand = errors.New("fsm: invalid command")

// Encoding, format version 1:
//
//	version  1 byte   = 1
//	op       1 byte
//	flags    1 byte   bit 0: CAS; the other bits must be zero
//	casIndex uvarint  only when CAS is set
//	key      uvarint length, then the bytes
//	value    uvarint length, then the bytes
//
// Varints must be minimal, so every Command has exactly one encoding and decoding a valid
// encoding and re-encoding it gives back the same bytes.
const (
	commandVersion byte = 1
	flagCAS        byte = 1 << 0
	headerLen           = 3
)

// Encode returns the binary encoding of c that DecodeCommand reads.
func (c Command) Encode() []byte {
	return AppendCommand(make([]byte, 0, c.encodedLen()), c)
}

func (c Command) encodedLen() int {
	n := headerLen + uvarintLen(uint64(len(c.Key))) + len(c.Key) + uvarintLen(uint64(len(c.Value))) + len(c.Value)
	if c.CAS {
		n += uvarintLen(c.CASIndex)
	}
	return n
}

// AppendCommand appends the encoding of c to dst and returns the extended slice. It does not
// validate c: an unknown Op is encoded as is and rejected by DecodeCommand.
func AppendCommand(dst []byte, c Command) []byte {
	var flags byte
	if c.CAS {
		flags |= flagCAS
	}
	dst = append(dst, commandVersion, byte(c.Op), flags)
	if c.CAS {
		dst = binary.AppendUvarint(dst, c.CASIndex)
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
	dst = append(dst, c.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(c.Value)))
	return append(dst, c.Value...)
}

// DecodeCommand parses an encoding made by Encode. It is strict, because the log is shared by every
// node and a lenient reader invites two nodes to read the same bytes differently: an unknown
// version, op or flag, a truncated field, a non-minimal varint or trailing bytes are all errors
// wrapping ErrInvalidCommand. It never panics.
//
// The returned Value aliases b (an empty value is nil); copy it before b is reused.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) < headerLen {
		return Command{}, invalidCommand("truncated header: %d of %d bytes", len(b), headerLen)
	}
	if b[0] != commandVersion {
		return Command{}, invalidCommand("unknown format version %d (want %d)", b[0], commandVersion)
	}
	c := Command{Op: Op(b[1])}
	if !c.Op.valid() {
		return Command{}, invalidCommand("unknown op %d", b[1])
	}
	flags := b[2]
	if flags&^flagCAS != 0 {
		return Command{}, invalidCommand("unknown flags %#02x", flags)
	}
	rest := b[headerLen:]
	var err error
	if flags&flagCAS != 0 {
		c.CAS = true
		if c.CASIndex, rest, err = readUvarint(rest, "cas index"); err != nil {
			return Command{}, err
		}
	}
	key, rest, err := readBytes(rest, "key", "key length")
	if err != nil {
		return Command{}, err
	}
	c.Key = string(key)
	value, rest, err := readBytes(rest, "value", "value length")
	if err != nil {
		return Command{}, err
	}
	if len(value) > 0 {
		// Cap the capacity so a caller appending to Value cannot scribble over b.
		c.Value = value[:len(value):len(value)]
	}
	if len(rest) != 0 {
		return Command{}, invalidCommand("%d trailing bytes after %s command", len(rest), c.Op)
	}
	if c.Op == OpACL && (c.CAS || c.Key != "") {
		return Command{}, invalidCommand("an acl command has no cas and no key")
	}
	if c.Op == OpTxn {
		if c.CAS || c.Key != "" {
			return Command{}, invalidCommand("a txn command has no cas and no key")
		}
		if c.Txn, err = DecodeTxn(c.Value); err != nil {
			return Command{}, err
		}
	}
	if c.Op == OpSession {
		if c.CAS || c.Key != "" {
			return Command{}, invalidCommand("a session command has no cas and no key")
		}
		if c.Session, err = DecodeSessionCmd(c.Value); err != nil {
			return Command{}, err
		}
	}
	return c, nil
}

// readUvarint reads one minimal uvarint from the front of b.
func readUvarint(b []byte, field string) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, nil, invalidCommand("truncated %s", field)
	case n < 0:
		return 0, nil, invalidCommand("%s overflows 64 bits", field)
	case n != uvarintLen(v):
		return 0, nil, invalidCommand("non-minimal varint for %s", field)
	}
	return v, b[n:], nil
}

// readBytes reads a length-prefixed field from the front of b, without copying. lengthField names
// the prefix in errors; it is a separate constant because building it from field would allocate on
// every call, error or not.
func readBytes(b []byte, field, lengthField string) ([]byte, []byte, error) {
	n, rest, err := readUvarint(b, lengthField)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(rest)) {
		return nil, nil, invalidCommand("truncated %s: %d of %d bytes", field, len(rest), n)
	}
	return rest[:n], rest[n:], nil
}

// uvarintLen is the number of bytes binary.AppendUvarint uses for v.
func uvarintLen(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

func invalidCommand(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidCommand, fmt.Sprintf(format, args...))
}
