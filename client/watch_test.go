package client

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func sse(lines ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Kv-Index", "10")
		w.WriteHeader(200)
		for _, l := range lines {
			fmt.Fprint(w, l)
		}
	}
}

func event(index uint64, key string) string {
	return fmt.Sprintf("id: %d\ndata: {\"index\":%d,\"changes\":[{\"type\":\"put\",\"key\":%q,\"value\":\"eA==\",\"create_index\":%d,\"mod_index\":%d}]}\n\n",
		index, index, key, index, index)
}

// A watch resumes on the next node from the first undelivered index, whatever ended the stream, and
// reports a compacted history as ErrCompacted.
func TestWatchResumesOnAnotherNodeWithoutGapsOrRepeats(t *testing.T) {
	a, urlA := newFake(t,
		sse("event: progress\nid: 10\ndata: {\"index\":10}\n\n", event(11, "p/a")), // then the node dies
		jsonReply(410, `{"error":"compacted","code":"compacted","compact_index":50}`),
	)
	b, urlB := newFake(t,
		sse(event(12, "p/b"), "event: error\ndata: {\"code\":\"lagging\",\"error\":\"too slow\",\"resume_index\":13}\n\n"),
	)
	c := newTestClient(t, urlA, urlB)
	var resumes []uint64
	w := c.Watch(WatchOptions{Prefix: "p/", OnResume: func(_ error, next uint64) { resumes = append(resumes, next) }})
	defer w.Close()
	ctx := context.Background()

	ev, err := w.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(11), ev.Index)
	require.Equal(t, []Change{{Type: "put", Key: "p/a", Value: []byte("x"), CreateIndex: 11, ModIndex: 11}}, ev.Changes)
	require.JSONEq(t, `{"index":11,"changes":[{"type":"put","key":"p/a","value":"eA==","create_index":11,"mod_index":11}]}`, string(ev.Raw))

	ev, err = w.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(12), ev.Index)
	require.Equal(t, "12", b.requests()[0].URL.Query().Get("index"), "resumed right after the last event")
	require.Equal(t, "p/", b.requests()[0].URL.Query().Get("prefix"))

	_, err = w.Next(ctx)
	require.ErrorIs(t, err, ErrCompacted)
	require.Equal(t, "13", a.requests()[1].URL.Query().Get("index"), "resumed where the lagging stream said")
	require.Equal(t, uint64(13), w.NextIndex())
	require.Equal(t, []uint64{12, 13}, resumes, "each resume reported with the index it resumes from")
	require.Empty(t, a.requests()[0].URL.Query().Get("index"), "the first stream starts now")
	require.Empty(t, a.requests()[0].URL.Query().Get("min_index"), "nothing seen yet")
	require.Equal(t, "12", a.requests()[1].URL.Query().Get("min_index"), "a resumed stream asks for what the client has seen")
}
