package transport

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newStdLogger adapts slog for libraries that take a *log.Logger and mark levels with a "[LEVEL]"
// prefix in the message (memberlist does), so their lines come out in the node's format and level.
// Warnings and errors pass through t, by the source address memberlist names ("from=host:port"), or
// by their text when they name none.
func newStdLogger(logger *slog.Logger, t *LogThrottle) *log.Logger {
	return log.New(&levelWriter{logger: logger, throttle: t}, "", 0)
}

type levelWriter struct {
	logger   *slog.Logger
	throttle *LogThrottle
}

var levelPrefixes = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[DEBUG] "), slog.LevelDebug},
	{[]byte("[TRACE] "), slog.LevelDebug},
	{[]byte("[INFO] "), slog.LevelInfo},
	{[]byte("[WARN] "), slog.LevelWarn},
	{[]byte("[ERR] "), slog.LevelError},
	{[]byte("[ERROR] "), slog.LevelError},
}

func (w *levelWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, lp := range levelPrefixes {
		if bytes.HasPrefix(msg, lp.prefix) {
			level, msg = lp.level, msg[len(lp.prefix):]
			break
		}
	}
	if !w.logger.Enabled(context.Background(), level) {
		return len(p), nil
	}
	msg = bytes.TrimPrefix(msg, []byte("memberlist: "))
	if level >= slog.LevelWarn && w.throttle != nil && !w.throttle.Allow(lineSource(msg)) {
		return len(p), nil
	}
	w.logger.Log(context.Background(), level, string(msg))
	return len(p), nil
}

// lineSource is the host a memberlist line names with "from=", or the line's text up to the first
// digit (so that lines differing only in numbers share one key) when it names none.
func lineSource(msg []byte) string {
	if i := bytes.Index(msg, []byte("from=")); i >= 0 {
		addr := msg[i+len("from="):]
		if j := bytes.IndexAny(addr, " \t,)"); j >= 0 {
			addr = addr[:j]
		}
		return hostOf(string(addr))
	}
	if i := bytes.IndexAny(msg, "0123456789"); i >= 0 {
		msg = msg[:i]
	}
	return string(msg[:min(len(msg), 80)])
}
