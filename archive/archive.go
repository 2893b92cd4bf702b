// Package archive is the file format of a raftkv backup: a self-describing envelope around a snapshot of
// the replicated state. It owns the framing, the metadata and the checksum, and never looks inside the
// data (store and fsm do).
//
// Format, version 1:
//
//	"RAFTKV-SNAPSHOT 1\n"               magic and format version, readable with head -1
//	metadata                            one line of JSON (Metadata), ending in "\n", at most 64 KiB
//	chunks                              the data: each a 4-byte big-endian length n > 0 and n bytes;
//	                                    a zero length ends the data
//	"SHA256 " 64 hex digits "\n"        SHA-256 over every byte before "SHA256 "
//
// Chunks let a node stream a backup as it serializes the state, without knowing its size or buffering
// it; the end marker and the trailing checksum make a truncated stream (a node that failed mid-way, a
// partial copy) fail verification instead of looking like a smaller backup. Lessons from Consul's
// snapshot archive (tar: meta.json, state.bin, SHA256SUMS): verify the whole file before anything is
// restored, and treat bytes after the end as corruption.
package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// FormatVersion is the version this package writes and the only one it reads.
const FormatVersion = 1

const (
	magicPrefix  = "RAFTKV-SNAPSHOT "
	maxMetaLine  = 64 << 10
	chunkSize    = 64 << 10
	maxChunk     = 16 << 20
	trailerLabel = "SHA256 "
)

var (
	// ErrNotArchive: the input does not start like a raftkv backup (another program's file, or not a
	// backup at all).
	ErrNotArchive = errors.New("not a raftkv snapshot archive")
	// ErrUnsupportedVersion: a raftkv backup in a format this build does not read.
	ErrUnsupportedVersion = errors.New("unsupported snapshot archive version")
	// ErrTruncated: the archive ends before its checksum.
	ErrTruncated = errors.New("snapshot archive is truncated")
	// ErrCorrupt: the checksum does not match, or the framing is damaged.
	ErrCorrupt = errors.New("snapshot archive is corrupt")
)

// Metadata describes a backup. It is covered by the checksum like the data.
type Metadata struct {
	FormatVersion int    `json:"format_version"`
	ClusterID     string `json:"cluster_id,omitempty"`
	NodeID        string `json:"node_id"` // the node that wrote it
	// Time the state was captured, UTC.
	Time time.Time `json:"time"`
	// WriteIndex: every write with an index up to it is in the data, none after it.
	WriteIndex uint64 `json:"write_index"`
	// RaftIndex is the last Raft entry the captured state reflects; RaftTerm the term then.
	RaftIndex uint64 `json:"raft_index"`
	RaftTerm  uint64 `json:"raft_term"`
	// DataFormat names the encoding of the data, e.g. "fsm-snapshot/2".
	DataFormat string `json:"data_format"`
}

// Writer writes one archive. Write the data with Write, then Close to add the end marker and checksum;
// an archive whose Close was never called is truncated, and readers refuse it.
type Writer struct {
	w   *bufio.Writer
	sum hash.Hash
	buf []byte
	err error
}

// NewWriter writes the magic line and meta to w.
func NewWriter(w io.Writer, meta Metadata) (*Writer, error) {
	meta.FormatVersion = FormatVersion
	line, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("archive: encode metadata: %w", err)
	}
	aw := &Writer{w: bufio.NewWriterSize(w, chunkSize+4), sum: sha256.New(), buf: make([]byte, 0, chunkSize)}
	aw.emit([]byte(fmt.Sprintf("%s%d\n", magicPrefix, FormatVersion)))
	aw.emit(append(line, '\n'))
	return aw, aw.err
}

func (aw *Writer) emit(b []byte) {
	if aw.err != nil {
		return
	}
	aw.sum.Write(b)
	_, aw.err = aw.w.Write(b)
}

func (aw *Writer) flushChunk() {
	if len(aw.buf) == 0 {
		return
	}
	aw.emit(binary.BigEndian.AppendUint32(nil, uint32(len(aw.buf))))
	aw.emit(aw.buf)
	aw.buf = aw.buf[:0]
}

// Write adds data.
func (aw *Writer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && aw.err == nil {
		k := min(len(p), chunkSize-len(aw.buf))
		aw.buf = append(aw.buf, p[:k]...)
		p = p[k:]
		if len(aw.buf) == chunkSize {
			aw.flushChunk()
		}
	}
	if aw.err != nil {
		return 0, aw.err
	}
	return n, nil
}

// Close ends the data and writes the checksum. It does not close the underlying writer.
func (aw *Writer) Close() error {
	aw.flushChunk()
	aw.emit([]byte{0, 0, 0, 0})
	if aw.err != nil {
		return aw.err
	}
	trailer := trailerLabel + hex.EncodeToString(aw.sum.Sum(nil)) + "\n"
	if _, err := aw.w.WriteString(trailer); err != nil {
		return err
	}
	return aw.w.Flush()
}

// Read reads a whole archive from r, copying its data to data as it goes, and returns the metadata once
// the checksum is verified. Until Read returns nil, what was copied to data must not be trusted: a
// restore writes it somewhere temporary and uses it only after Read succeeds. Bytes after the checksum
// line are corruption.
func Read(r io.Reader, data io.Writer) (Metadata, error) {
	br := bufio.NewReaderSize(r, chunkSize+4)
	sum := sha256.New()
	var meta Metadata

	first, err := readLine(br, len(magicPrefix)+8)
	if err != nil || !bytes.HasPrefix(first, []byte(magicPrefix)) {
		return meta, fmt.Errorf("%w: it does not begin with %q", ErrNotArchive, magicPrefix)
	}
	sum.Write(first)
	if string(first) != fmt.Sprintf("%s%d\n", magicPrefix, FormatVersion) {
		return meta, fmt.Errorf("%w: %q (this build reads version %d)", ErrUnsupportedVersion,
			bytes.TrimSpace(first), FormatVersion)
	}
	line, err := readLine(br, maxMetaLine)
	if err != nil {
		return meta, fmt.Errorf("%w: metadata: %v", truncatedOr(err), err)
	}
	sum.Write(line)
	if err := json.Unmarshal(line, &meta); err != nil {
		return meta, fmt.Errorf("%w: metadata is not valid JSON: %v", ErrCorrupt, err)
	}
	var hdr [4]byte
	var total int64
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return meta, fmt.Errorf("%w: data ends after %d bytes without its end marker", ErrTruncated, total)
		}
		sum.Write(hdr[:])
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			break
		}
		if n > maxChunk {
			return meta, fmt.Errorf("%w: a data chunk claims %d bytes", ErrCorrupt, n)
		}
		if _, err := io.CopyN(io.MultiWriter(data, sum), br, int64(n)); err != nil {
			if errors.Is(err, io.EOF) {
				return meta, fmt.Errorf("%w: data ends inside a chunk after %d bytes", ErrTruncated, total)
			}
			return meta, fmt.Errorf("archive: copy data: %w", err)
		}
		total += int64(n)
	}
	trailer, err := readLine(br, len(trailerLabel)+2*sha256.Size+1)
	if err != nil {
		return meta, fmt.Errorf("%w: the checksum line is missing", ErrTruncated)
	}
	got := trailerLabel + hex.EncodeToString(sum.Sum(nil)) + "\n"
	if string(trailer) != got {
		return meta, fmt.Errorf("%w: SHA-256 mismatch (the file says %q, its content hashes to %q)",
			ErrCorrupt, bytes.TrimSpace(trailer), got[len(trailerLabel):len(got)-1])
	}
	if n, _ := br.Read(make([]byte, 1)); n > 0 {
		return meta, fmt.Errorf("%w: bytes after the checksum", ErrCorrupt)
	}
	return meta, nil
}

// readLine reads up to and including '\n', at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var out []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return out, err
		}
		out = append(out, b)
		if b == '\n' {
			return out, nil
		}
		if len(out) >= max {
			return out, fmt.Errorf("%w: line longer than %d bytes", ErrCorrupt, max)
		}
	}
}

func truncatedOr(err error) error {
	if errors.Is(err, io.EOF) {
		return ErrTruncated
	}
	return ErrCorrupt
}
