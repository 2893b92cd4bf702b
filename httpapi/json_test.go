package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "nl\n cr\r tab\t nul\x00 esc\x1b del\x7f",
		"日本語 😀", "bad \xff utf8 \xe6\x97", "<html>&amp;", "\u2028\u2029",
	} {
		b := appendJSONString(nil, s)
		require.True(t, json.Valid(b), "%q -> %s", s, b)
		var back string
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, replaceInvalidBytes(s), back)
		std, err := json.Marshal(s)
		require.NoError(t, err)
		var stdBack string
		require.NoError(t, json.Unmarshal(std, &stdBack))
		assert.Equal(t, stdBack, back, "same text as encoding/json")
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("\x00\"\\\xff")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString([]byte("prefix"), s)
		require.Equal(t, "prefix", string(b[:6]))
		var back string
		require.NoError(t, json.Unmarshal(b[6:], &back), "%q -> %s", s, b[6:])
		require.Equal(t, replaceInvalidBytes(s), back)
	})
}

// replaceInvalidBytes replaces each byte of invalid UTF-8 with U+FFFD, as encoding/json and
// appendJSONString do (strings.ToValidUTF8 would collapse a run into one).
func replaceInvalidBytes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}
