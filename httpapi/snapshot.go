package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// snapshotProgressTimeout: a backup or restore stream may take as long as it needs, as long as it keeps
// moving; the server's fixed read and write deadlines are replaced by one that each chunk pushes on.
const snapshotProgressTimeout = 30 * time.Second

// handleBackup serves GET /v1/snapshot: a consistent backup of this node's state, as an archive
// (package archive). Errors before the first byte are JSON errors; a failure while streaming leaves a
// truncated archive, which inspect and restore refuse.
func (s *server) handleBackup(w http.ResponseWriter, r *http.Request) {
	b, err := s.store.Backup(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="raftkv-`+strconv.FormatUint(b.Meta.WriteIndex, 10)+`.snap"`)
	h.Set("X-Kv-Write-Index", strconv.FormatUint(b.Meta.WriteIndex, 10))
	w.WriteHeader(http.StatusOK)
	if err := b.Write(&progressWriter{w: w, rc: rc}); err != nil {
		s.log.Warn("backup stream failed; the client has a truncated archive", "err", err)
	}
}

// handleRestore serves PUT /v1/snapshot: the body is an archive to restore on every node.
func (s *server) handleRestore(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil {
		s.writeError(w, r, invalidRequest("request body is empty; want a snapshot archive"))
		return
	}
	var timeout time.Duration
	err := forEachParam(r.URL.RawQuery, func(name, value string) error {
		if name != "timeout" {
			return unknownParam(name)
		}
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return paramError("timeout must be a positive duration such as 10m, got " + strconv.Quote(value))
		}
		timeout = d
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	if timeout > 0 {
		// The whole restore (receiving the archive, verifying and preparing it) must fit in it; the
		// leader installs it only if it did, so past it the answer is 503 timeout and nothing changed.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	rc := http.NewResponseController(w)
	res, err := s.store.Restore(ctx, &progressReader{r: r.Body, rc: rc})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	_ = rc.SetWriteDeadline(time.Now().Add(snapshotProgressTimeout))
	body, err := json.Marshal(res)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

type progressWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(snapshotProgressTimeout)) // unsupported writers just keep theirs
	return p.w.Write(b)
}

type progressReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (p *progressReader) Read(b []byte) (int, error) {
	_ = p.rc.SetReadDeadline(time.Now().Add(snapshotProgressTimeout))
	return p.r.Read(b)
}
