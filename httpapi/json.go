package httpapi

import (
	"net/http"
	"strconv"
	"unicode/utf8"
)

// Shared header values and fixed bodies. Each slice has cap 1, so http.Header.Add appends to a copy and
// cannot change them; nothing in net/http writes into header values. Sharing saves an allocation per
// response on the hot path.
var (
	contentTypeJSON  = []string{"application/json"}[:1:1]
	contentTypeOctet = []string{"application/octet-stream"}[:1:1]
	retryAfterOne    = []string{"1"}[:1:1]
	headerTrue       = []string{"true"}[:1:1]
	headerFalse      = []string{"false"}[:1:1]

	healthOK = []byte(`{"status":"ok"}`)
	readyOK  = []byte(`{"ready":true,"reason":"","status":"ready"}`)
	leftOK   = []byte(`{"left":true}`)
	joinedOK = []byte(`{"joined":true}`)
)

// writeJSON writes a pre-encoded JSON body.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(status)
	_, _ = w.Write(body) // a write error means the client is gone; there is no one to tell
}

// writeIndex writes {"index":N}, the answer to a PUT.
func writeIndex(w http.ResponseWriter, index uint64) {
	b := make([]byte, 0, 32)
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, '}')
	writeJSON(w, http.StatusOK, b)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. It escapes what JSON requires (quote, backslash, control
// characters) and replaces invalid UTF-8 with U+FFFD, as encoding/json does, so the output is always
// valid JSON whatever the input (error messages may echo a raw path).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, needing no escape
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
