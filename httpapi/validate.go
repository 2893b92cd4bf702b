package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/store"
)

// keyFromPath decodes and validates the key part of /v1/kv/{key...} (still percent-encoded).
func (s *server) keyFromPath(escaped string) (string, error) {
	key, err := url.PathUnescape(escaped) // no allocation unless the key has a %-escape
	if err != nil {
		return "", &apiError{http.StatusBadRequest, codeInvalidKey, "key is not validly percent-encoded"}
	}
	if key == "" {
		return "", &apiError{http.StatusBadRequest, codeInvalidKey, "key is empty"}
	}
	if problem := checkKeyText(key, s.opts.MaxKeySize); problem != "" {
		return "", &apiError{http.StatusBadRequest, codeInvalidKey, "key " + problem}
	}
	return key, nil
}

// checkKeyText says what is wrong with a key (or a prefix, an after= or a member id), or "" if nothing:
// at most max bytes of valid UTF-8 without control characters. Keys travel in URLs, headers and logs,
// where control characters are trouble.
func checkKeyText(s string, max int) string {
	if len(s) > max {
		return "is " + strconv.Itoa(len(s)) + " bytes, over the limit of " + strconv.Itoa(max)
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return "contains control character " + strconv.QuoteRune(rune(c))
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	return ""
}

// forEachParam walks a raw query string, calling fn with each unescaped name and value. Empty segments
// ("a=1&&b=2") are skipped; a name without "=" has the value "".
func forEachParam(rawQuery string, fn func(name, value string) error) error {
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err1 := url.QueryUnescape(rawName)
		value, err2 := url.QueryUnescape(rawValue)
		if err1 != nil || err2 != nil {
			return paramError("query parameter " + strconv.Quote(rawName) + " is not validly percent-encoded")
		}
		if err := fn(name, value); err != nil {
			return err
		}
	}
	return nil
}

func paramError(msg string) error {
	return &apiError{http.StatusBadRequest, codeInvalidParameter, msg}
}

func unknownParam(name string) error {
	return paramError("unknown query parameter " + strconv.Quote(name))
}

func repeatedParam(name string) error {
	return paramError("query parameter " + strconv.Quote(name) + " given more than once")
}

// Every parameter, when present, must be valid: an empty "cas=" is an error, not "no cas". Unknown
// parameters are errors too: a misspelt "cass=3" must not turn a conditional write into a blind one.

// readParams are the query parameters of GET /v1/kv/{key}.
type readParams struct {
	consistency store.Consistency
	minIndex    uint64 // 0: no wait
	poll        pollParams
}

// pollParams are a long-poll's index=N&wait=D: answer once there is a change above N, or after D.
type pollParams struct {
	index               uint64
	wait                time.Duration
	seenIndex, seenWait bool
}

// DefaultWait is a long-poll's wait when index= comes without wait=.
const DefaultWait = 5 * time.Minute

// param reads index= and wait=; it reports false for any other name.
func (p *pollParams) param(name, value string) (bool, error) {
	var err error
	switch name {
	case "index":
		if err = once(&p.seenIndex, name); err == nil {
			p.index, err = parseIndexParam(name, value)
		}
	case "wait":
		if err = once(&p.seenWait, name); err == nil {
			p.wait, err = parseWait(value)
		}
	default:
		return false, nil
	}
	return true, err
}

func (p *pollParams) check() error {
	if p.seenWait && !p.seenIndex {
		return paramError("wait= needs index=: the index whose later changes to wait for")
	}
	if p.seenIndex && !p.seenWait {
		p.wait = DefaultWait
	}
	return nil
}

// parseReadParams reads the query of GET /v1/kv/{key}: an optional consistency= and min_index=.
func parseReadParams(rawQuery string) (readParams, error) {
	p := readParams{consistency: store.Linearizable}
	var seenConsistency, seenMinIndex bool
	err := forEachParam(rawQuery, func(name, value string) error {
		var err error
		switch name {
		case "consistency":
			if err = once(&seenConsistency, name); err == nil {
				p.consistency, err = parseConsistency(value)
			}
		case "min_index":
			if err = once(&seenMinIndex, name); err == nil {
				p.minIndex, err = parseMinIndex(value)
			}
		default:
			var ok bool
			if ok, err = p.poll.param(name, value); !ok {
				err = unknownParam(name)
			}
		}
		return err
	})
	if err == nil {
		err = p.poll.check()
	}
	return p, err
}

// once marks a parameter seen, or reports it repeated.
func once(seen *bool, name string) error {
	if *seen {
		return repeatedParam(name)
	}
	*seen = true
	return nil
}

func parseMinIndex(value string) (uint64, error) {
	n, err := strconv.ParseUint(value, 10, 64)
	if err != nil {
		return 0, paramError("min_index must be an unsigned decimal index, got " + strconv.Quote(value))
	}
	return n, nil
}

// sessionParams are PUT /v1/kv/{key}'s session parameters: at most one of session=, acquire=,
// release= (each a session id), never with cas=.
type sessionParams struct {
	mode string // "session", "acquire", "release" or "" (none)
	id   string
}

// parsePutParams reads the query of PUT /v1/kv/{key}: cas=N, or one session parameter.
func parsePutParams(rawQuery string) (store.Precondition, sessionParams, error) {
	var sp sessionParams
	var rest []string
	err := forEachParam(rawQuery, func(name, value string) error {
		switch name {
		case "session", "acquire", "release":
			if sp.mode != "" {
				return paramError("only one of session, acquire and release")
			}
			if value == "" {
				return paramError(name + " needs a session id")
			}
			sp = sessionParams{mode: name, id: value}
			return nil
		}
		rest = append(rest, url.QueryEscape(name)+"="+url.QueryEscape(value))
		return nil
	})
	if err != nil {
		return store.Precondition{}, sp, err
	}
	pre, err := parseWriteParams(strings.Join(rest, "&"))
	if err == nil && pre.Check && sp.mode != "" {
		err = paramError("cas does not combine with " + sp.mode)
	}
	return pre, sp, err
}

// parseWriteParams reads the query of PUT and DELETE /v1/kv/{key}: an optional cas=N.
func parseWriteParams(rawQuery string) (store.Precondition, error) {
	var pre store.Precondition
	err := forEachParam(rawQuery, func(name, value string) error {
		if name != "cas" {
			return unknownParam(name)
		}
		if pre.Check {
			return repeatedParam(name)
		}
		index, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return paramError("cas must be an unsigned decimal index, got " + strconv.Quote(value))
		}
		pre = store.Precondition{Check: true, Index: index}
		return nil
	})
	return pre, err
}

func parseConsistency(value string) (store.Consistency, error) {
	switch value {
	case "linearizable":
		return store.Linearizable, nil
	case "stale":
		return store.Stale, nil
	}
	return 0, paramError(`consistency must be "linearizable" or "stale", got ` + strconv.Quote(value))
}

// listParams are the query parameters of GET /v1/kv.
type listParams struct {
	prefix, after string
	limit         int
	consistency   store.Consistency
	minIndex      uint64 // 0: no wait
	poll          pollParams
}

func (s *server) parseListParams(rawQuery string) (listParams, error) {
	p := listParams{limit: s.opts.DefaultListLimit}
	var seenPrefix, seenAfter, seenLimit, seenConsistency, seenMinIndex bool
	err := forEachParam(rawQuery, func(name, value string) error {
		var err error
		switch name {
		case "prefix":
			if err = once(&seenPrefix, name); err == nil {
				p.prefix, err = s.checkKeyParam(name, value)
			}
		case "after":
			if err = once(&seenAfter, name); err == nil {
				p.after, err = s.checkKeyParam(name, value)
			}
		case "limit":
			if err = once(&seenLimit, name); err == nil {
				p.limit, err = s.parseLimit(value)
			}
		case "consistency":
			if err = once(&seenConsistency, name); err == nil {
				p.consistency, err = parseConsistency(value)
			}
		case "min_index":
			if err = once(&seenMinIndex, name); err == nil {
				p.minIndex, err = parseMinIndex(value)
			}
		default:
			var ok bool
			if ok, err = p.poll.param(name, value); !ok {
				err = unknownParam(name)
			}
		}
		return err
	})
	if err == nil {
		err = p.poll.check()
	}
	return p, err
}

// checkKeyParam validates prefix= and after=: key text, where empty means "none".
func (s *server) checkKeyParam(name, value string) (string, error) {
	if problem := checkKeyText(value, s.opts.MaxKeySize); problem != "" {
		return "", paramError(name + " " + problem)
	}
	return value, nil
}

func (s *server) parseLimit(value string) (int, error) {
	n, err := strconv.ParseUint(value, 10, 64)
	if err != nil || n < 1 || n > uint64(s.opts.MaxListLimit) {
		return 0, paramError("limit must be an integer from 1 to " + strconv.Itoa(s.opts.MaxListLimit) +
			", got " + strconv.Quote(value))
	}
	return int(n), nil
}
