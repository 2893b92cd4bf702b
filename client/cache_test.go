package client

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func listReply(index uint64, next string, entries ...string) func(http.ResponseWriter) {
	body := "["
	for i, k := range entries {
		if i > 0 {
			body += ","
		}
		body += fmt.Sprintf(`{"key":%q,"value":"eA==","create_index":1,"mod_index":%d}`, k, index)
	}
	body += "]"
	headers := []string{"X-Kv-Index", fmt.Sprint(index)}
	if next != "" {
		headers = append(headers, "X-Kv-More", "true", "X-Kv-Next-After", next)
	}
	return jsonReply(200, body, headers...)
}

func deleteEvent(index uint64, key string) string {
	return fmt.Sprintf("id: %d\ndata: {\"index\":%d,\"changes\":[{\"type\":\"delete\",\"key\":%q,\"create_index\":1,\"mod_index\":%d}]}\n\n",
		index, index, key, index)
}

// The informer: two pages listed at different indexes are shown only once the watch has carried the
// union past the later one (a change older than a page does not undo it); then events apply as they
// come; a compacted history relists, and the index shown never goes back.
func TestCacheListsWatchesAndRelistsWithoutGoingBack(t *testing.T) {
	fake, url := newFake(t,
		listReply(10, "p/a", "p/a"), // page 1 at 10
		listReply(13, "", "p/b"),    // page 2 at 13: p/b was written at 13
		sse(event(12, "p/b"), event(14, "p/c"), "event: progress\nid: 15\ndata: {\"index\":15}\n\n",
			deleteEvent(16, "p/a"),
			"event: error\ndata: {\"code\":\"compacted\",\"error\":\"history moved on\"}\n\n"),
		listReply(20, "", "p/c", "p/d"),
		sse("event: progress\nid: 21\ndata: {\"index\":21}\n\n"),
	)
	c := newTestClient(t, url)
	ca := c.NewCache("p/")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ca.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(index uint64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		require.NoError(t, ca.WaitIndex(wctx, index))
	}
	keys := func() []string {
		es, _ := ca.List()
		var ks []string
		for _, e := range es {
			ks = append(ks, fmt.Sprintf("%s@%d", e.Key, e.ModIndex))
		}
		return ks
	}
	wait(21)
	require.Equal(t, []string{"p/c@20", "p/d@20"}, keys(), "the relisted state")

	reqs := fake.requests()
	require.Equal(t, "11", reqs[2].URL.Query().Get("index"), "watched from the first page's index + 1")
	require.Equal(t, "13", reqs[2].URL.Query().Get("min_index"))
	require.Equal(t, "16", reqs[3].URL.Query().Get("min_index"), "the relist is at least as new as what was shown")
	require.Equal(t, "stale", reqs[3].URL.Query().Get("consistency"))
}

// What a Cache shows in between: never the half-built union, never an older index.
func TestCacheShowsOnlyConsistentStates(t *testing.T) {
	_, url := newFake(t,
		listReply(10, "p/a", "p/a"),
		listReply(13, "", "p/b"),
		sse(event(12, "p/b"), event(14, "p/c")),
	)
	c := newTestClient(t, url)
	ca := c.NewCache("p/")
	require.Zero(t, ca.Index())
	ch := ca.Updated()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ca.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-ch
	es, index := ca.List()
	require.GreaterOrEqual(t, index, uint64(13), "first shown once past the last page")
	e, ok := ca.Get("p/b")
	require.True(t, ok)
	require.Equal(t, uint64(13), e.ModIndex, "the page's newer version, not the older event's")
	require.NotEmpty(t, es)
}
