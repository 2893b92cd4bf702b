package archive

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func build(t *testing.T, data []byte) ([]byte, Metadata) {
	t.Helper()
	meta := Metadata{ClusterID: "c1", NodeID: "n1", Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		WriteIndex: 42, RaftIndex: 40, RaftTerm: 3, DataFormat: "test/1"}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, meta)
	require.NoError(t, err)
	// Uneven writes, to cross chunk boundaries in odd places.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+len(rest)%70001)
		_, err := w.Write(rest[:n])
		require.NoError(t, err)
		rest = rest[n:]
	}
	require.NoError(t, w.Close())
	meta.FormatVersion = FormatVersion
	return buf.Bytes(), meta
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, 3*chunkSize + 17} {
		data := randomBytes(size)
		file, meta := build(t, data)
		var got bytes.Buffer
		gotMeta, err := Read(bytes.NewReader(file), &got)
		require.NoError(t, err, "size %d", size)
		assert.Equal(t, meta, gotMeta)
		assert.True(t, bytes.Equal(data, got.Bytes()), "size %d: data differs", size)
	}
}

func TestEveryFlippedByteIsRefused(t *testing.T) {
	file, _ := build(t, randomBytes(2*chunkSize+5))
	// Every byte of the head and the tail, and a sample of the data.
	for i := 0; i < len(file); i++ {
		if i > 300 && i < len(file)-300 && i%997 != 0 {
			continue
		}
		bad := bytes.Clone(file)
		bad[i] ^= 0x20
		_, err := Read(bytes.NewReader(bad), io.Discard)
		require.Error(t, err, "byte %d flipped", i)
		assert.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated) || errors.Is(err, ErrNotArchive) ||
			errors.Is(err, ErrUnsupportedVersion), "byte %d: %v", i, err)
	}
}

func TestEveryTruncationIsRefused(t *testing.T) {
	file, _ := build(t, randomBytes(chunkSize+100))
	for _, n := range []int{0, 5, 17, 40, 200, chunkSize, len(file) - 80, len(file) - 2, len(file) - 1} {
		_, err := Read(bytes.NewReader(file[:n]), io.Discard)
		require.Error(t, err, "cut at %d of %d", n, len(file))
		if n > 20 {
			assert.ErrorIs(t, err, ErrTruncated, "cut at %d", n)
		}
	}
}

func TestForeignFilesAndTrailingBytesAreRefused(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":          nil,
		"etcd-ish bolt":  append([]byte{0, 0, 0, 0, 0xed, 0x0c, 0xda, 0x0b}, randomBytes(4096)...),
		"text":           []byte("hello world\nthis is not a backup\n"),
		"future version": []byte("RAFTKV-SNAPSHOT 9\n{}\n"),
	} {
		_, err := Read(bytes.NewReader(in), io.Discard)
		require.Error(t, err, name)
		if name == "future version" {
			assert.ErrorIs(t, err, ErrUnsupportedVersion)
		} else {
			assert.ErrorIs(t, err, ErrNotArchive, name)
		}
	}
	file, _ := build(t, []byte("data"))
	_, err := Read(bytes.NewReader(append(file, 'x')), io.Discard)
	assert.ErrorIs(t, err, ErrCorrupt)
}
