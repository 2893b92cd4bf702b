package transport

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newStdLogger adapts slog for libraries that take a *log.Logger and mark levels with a "[LEVEL]"
// prefix in the message (memberlist does), so their lines come out in the node's format and level.
func newStdLogger(logger *slog.Logger) *log.Logger {
	return log.New(&levelWriter{logger: logger}, "", 0)
}

type levelWriter struct{ logger *slog.Logger }

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
	if w.logger.Enabled(context.Background(), level) {
		w.logger.Log(context.Background(), level, string(bytes.TrimPrefix(msg, []byte("memberlist: "))))
	}
	return len(p), nil
}
