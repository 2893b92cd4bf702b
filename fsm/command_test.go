package fsm

import (
	"bytes"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommandRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cmd  Command
	}{
		{"put", Command{Op: OpPut, Key: "a", Value: []byte("hello")}},
		{"put empty value", Command{Op: OpPut, Key: "a"}},
		{"put empty key", Command{Op: OpPut, Value: []byte{0}}},
		{"put cas absent", Command{Op: OpPut, Key: "k", Value: []byte("v"), CAS: true}},
		{"put cas index", Command{Op: OpPut, Key: "k", Value: []byte("v"), CAS: true, CASIndex: 1 << 40}},
		{"put cas max index", Command{Op: OpPut, Key: "k", CAS: true, CASIndex: ^uint64(0)}},
		{"delete", Command{Op: OpDelete, Key: "some/key"}},
		{"delete cas", Command{Op: OpDelete, Key: "some/key", CAS: true, CASIndex: 7}},
		{"set member", Command{Op: OpSetMember, Key: "node-1", Value: []byte("0f3c9a")}},
		{"binary key and value", Command{Op: OpPut, Key: "\x00\xff\n", Value: []byte{0, 1, 2, 255}}},
		{"long value", Command{Op: OpPut, Key: "big", Value: bytes.Repeat([]byte("x"), 300)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := tt.cmd.Encode()
			require.Equal(t, commandVersion, enc[0], "first byte is the format version")
			require.Len(t, enc, tt.cmd.encodedLen())

			got, err := DecodeCommand(enc)
			require.NoError(t, err)
			require.Equal(t, tt.cmd, got)
			require.Equal(t, enc, got.Encode(), "encoding is canonical")
		})
	}
}

func TestCommandEncodingIsStable(t *testing.T) {
	// The log outlives the binary: these bytes must decode the same way forever.
	enc := Command{Op: OpPut, Key: "k", Value: []byte("v"), CAS: true, CASIndex: 300}.Encode()
	require.Equal(t, []byte{1, 1, 1, 0xac, 0x02, 1, 'k', 1, 'v'}, enc)
}

func TestAppendCommandAppends(t *testing.T) {
	c := Command{Op: OpDelete, Key: "x"}
	got := AppendCommand([]byte("prefix"), c)
	require.Equal(t, append([]byte("prefix"), c.Encode()...), got)
}

func TestDecodeCommandValueDoesNotAliasBeyondItself(t *testing.T) {
	enc := Command{Op: OpPut, Key: "k", Value: []byte("v")}.Encode()
	enc = append(enc, 0xEE)[:len(enc)] // spare capacity after the value
	got, err := DecodeCommand(enc)
	require.NoError(t, err)
	_ = append(got.Value, 'X')
	require.Equal(t, byte(0xEE), enc[:cap(enc)][len(enc)], "appending to Value must not write into the input")
}

func TestDecodeCommandErrors(t *testing.T) {
	valid := Command{Op: OpPut, Key: "key", Value: []byte("value"), CAS: true, CASIndex: 5}.Encode()
	tests := []struct {
		name string
		in   []byte
		msg  string
	}{
		{"nil", nil, "truncated header"},
		{"unknown version", append([]byte{2}, valid[1:]...), "unknown format version 2"},
		{"version zero", append([]byte{0}, valid[1:]...), "unknown format version 0"},
		{"op zero", []byte{1, 0, 0, 0, 0}, "unknown op 0"},
		{"unknown op", []byte{1, 5, 0, 0, 0}, "unknown op 5"},
		{"unknown flag", []byte{1, 1, 2, 0, 0}, "unknown flags"},
		{"truncated key", []byte{1, 1, 0, 5, 'a'}, "truncated key: 1 of 5 bytes"},
		{"missing value", []byte{1, 1, 0, 1, 'a'}, "truncated value length"},
		{"non-minimal varint", []byte{1, 2, 0, 0x81, 0x00, 'a', 0}, "non-minimal varint for key length"},
		{"varint overflow", []byte{1, 2, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "cas index overflows"},
		{"huge length", []byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "truncated key"},
		{"trailing bytes", append(append([]byte{}, valid...), 0), "1 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCommand(tt.in)
			require.ErrorIs(t, err, ErrInvalidCommand)
			require.ErrorContains(t, err, tt.msg)
		})
	}
}

func TestDecodeCommandRejectsEveryTruncation(t *testing.T) {
	for _, c := range []Command{
		{Op: OpPut, Key: "key", Value: []byte("value"), CAS: true, CASIndex: 1 << 20},
		{Op: OpDelete, Key: "k"},
		{Op: OpSetMember, Key: "n1", Value: []byte("d1")},
	} {
		enc := c.Encode()
		for n := range len(enc) {
			_, err := DecodeCommand(enc[:n])
			require.ErrorIs(t, err, ErrInvalidCommand, "prefix of %d of %d bytes of %+v", n, len(enc), c)
		}
	}
}

func TestCommandRandomRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for range 10_000 {
		c := randomCommand(rng)
		got, err := DecodeCommand(c.Encode())
		require.NoError(t, err)
		require.Equal(t, c, got)
	}
}

func TestDecodeCommandRandomGarbage(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	valid := 0
	for range 100_000 {
		b := make([]byte, rng.Intn(16))
		rng.Read(b)
		if rng.Intn(2) == 0 && len(b) > 2 {
			// Make it look plausible so decoding gets past the header.
			b[0], b[1], b[2] = commandVersion, byte(1+rng.Intn(3)), byte(rng.Intn(2))
		}
		c, err := DecodeCommand(b) // must not panic
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidCommand)
			continue
		}
		valid++
		require.Equal(t, b, c.Encode(), "a decodable input is the canonical encoding of what it decodes to")
	}
	require.Positive(t, valid, "the generator should hit some valid encodings")
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{
		{Op: OpPut, Key: "k", Value: []byte("v")},
		{Op: OpPut, Key: "k", CAS: true},
		{Op: OpDelete, Key: "a/b/c", CAS: true, CASIndex: 1 << 33},
		{Op: OpSetMember, Key: "node-1", Value: []byte("data-1")},
	} {
		f.Add(c.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0, 0x80, 0x00, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		enc := c.Encode()
		require.Equal(t, b, enc)
		again, err := DecodeCommand(enc)
		require.NoError(t, err)
		require.Equal(t, c, again)
	})
}

func BenchmarkEncodeCommand(b *testing.B) {
	c := Command{Op: OpPut, Key: "users/1234/profile", Value: bytes.Repeat([]byte("v"), 100), CAS: true, CASIndex: 123456}
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Encode()
	}
}

// randomCommand draws a command whose fields survive a round trip exactly: no CASIndex without CAS,
// nil rather than empty values.
func randomCommand(rng *rand.Rand) Command {
	c := Command{Op: Op(1 + rng.Intn(3)), Key: randomString(rng, 20)}
	if n := rng.Intn(3) * rng.Intn(200); n > 0 {
		c.Value = make([]byte, n)
		rng.Read(c.Value)
	}
	if rng.Intn(2) == 0 {
		c.CAS = true
		c.CASIndex = rng.Uint64() >> rng.Intn(64)
	}
	return c
}

func randomString(rng *rand.Rand, max int) string {
	b := make([]byte, rng.Intn(max+1))
	rng.Read(b)
	return string(b)
}
