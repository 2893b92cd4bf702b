package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A sealed entry wraps a command or batch encoding in a checksum, so that a byte changed in a stored
// log (a bad disk, a bad copy) is found before the entry is applied instead of being served as data.
//
// Encoding, format version 3:
//
//	version  1 byte            = 3
//	crc      4 bytes           big-endian CRC-32C (Castagnoli) of payload
//	payload  the rest          a version-1 command or a version-2 batch encoding
//
// The checksum covers the payload only: its first byte is the payload's own version, so a changed
// version byte is caught too. A sealed payload is never itself sealed.
const (
	sealedVersion byte = 3
	// SealHeaderLen is the size of the envelope's header: a buffer that starts with this many spare
	// bytes can be sealed in place (SealInPlace), without copying a large batch.
	SealHeaderLen = 5
	sealHeaderLen = SealHeaderLen
)

// ErrChecksum is wrapped by every error that means stored bytes are not what was written.
var ErrChecksum = errors.New("fsm: checksum mismatch")

// IsSealed reports whether an entry's data claims the sealed format; Unseal checks the rest.
func IsSealed(b []byte) bool { return len(b) > 0 && b[0] == sealedVersion }

// SealedLen is the size of the sealed encoding of a payload of n bytes.
func SealedLen(n int) int { return sealHeaderLen + n }

// Seal returns payload (a command or batch encoding) wrapped in a checksum.
func Seal(payload []byte) []byte {
	return AppendSealed(make([]byte, 0, SealedLen(len(payload))), payload)
}

// AppendSealed appends the sealed encoding of payload to dst.
func AppendSealed(dst, payload []byte) []byte {
	dst = append(dst, sealedVersion)
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	return append(dst, payload...)
}

// SealInPlace seals b[SealHeaderLen:], writing the header over b's first SealHeaderLen bytes, and
// returns b.
func SealInPlace(b []byte) []byte {
	b[0] = sealedVersion
	binary.BigEndian.PutUint32(b[1:sealHeaderLen], crc32.Checksum(b[sealHeaderLen:], castagnoli))
	return b
}

// Unseal checks a sealed entry and returns its payload, which aliases b. A checksum that does not match
// or a truncated envelope wraps ErrChecksum; a payload that is itself sealed wraps ErrInvalidCommand.
func Unseal(b []byte) ([]byte, error) {
	if !IsSealed(b) {
		return nil, invalidCommand("not sealed")
	}
	if len(b) <= sealHeaderLen {
		return nil, fmt.Errorf("%w: sealed entry truncated to %d bytes", ErrChecksum, len(b))
	}
	want := binary.BigEndian.Uint32(b[1:sealHeaderLen])
	payload := b[sealHeaderLen:]
	if got := crc32.Checksum(payload, castagnoli); got != want {
		return nil, fmt.Errorf("%w: crc32c %08x, recorded %08x", ErrChecksum, got, want)
	}
	if IsSealed(payload) {
		return nil, invalidCommand("sealed entry inside a sealed entry")
	}
	return payload, nil
}
