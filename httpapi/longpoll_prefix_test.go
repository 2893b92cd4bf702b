package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

type pollAnswer struct {
	status int
	index  uint64
	keys   []string
}

// listPoll starts a list long-poll of prefix from index and returns where its answer will arrive.
func (rg *watchRig) listPoll(t *testing.T, prefix string, index uint64) <-chan pollAnswer {
	t.Helper()
	done := make(chan pollAnswer, 1)
	go func() {
		resp, err := http.Get(rg.srv.URL + "/v1/kv?prefix=" + prefix + "&index=" + strconv.FormatUint(index, 10) + "&wait=30s")
		if err != nil {
			done <- pollAnswer{}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var entries []struct {
			Key string `json:"key"`
		}
		_ = json.Unmarshal(b, &entries)
		a := pollAnswer{status: resp.StatusCode}
		a.index, _ = strconv.ParseUint(resp.Header.Get("X-Kv-Index"), 10, 64)
		for _, e := range entries {
			a.keys = append(a.keys, e.Key)
		}
		done <- a
	}()
	return done
}

// A list long-poll wakes for a change under its prefix only (consul#410: a prefix wait that wakes on
// unrelated writes): a write of the prefix's parent or a sibling, or a transaction that writes only
// outside it, leaves it waiting; a transaction with one write inside wakes it at that transaction's
// index, and so does a delete under the prefix.
func TestListLongPollWakesOnlyForChangesUnderItsPrefix(t *testing.T) {
	rg := newWatchRig(t, Options{})
	i0 := rg.put(t, "p/a", "1")
	done := rg.listPoll(t, "p/", i0)
	txn := func(body string) uint64 {
		t.Helper()
		resp, err := http.Post(rg.srv.URL+"/v1/txn", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var ans struct {
			Index uint64 `json:"index"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
		return ans.Index
	}

	rg.put(t, "p", "parent")  // not under "p/"
	rg.put(t, "pa/x", "near") // a sibling that shares the text
	rg.put(t, "q/x", "other")
	txn(`{"success":[{"op":"put","key":"q/y","value":"MQ=="},{"op":"delete","key":"q/x"}]}`)
	select {
	case a := <-done:
		t.Fatalf("answered without a change under its prefix: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	woke := txn(`{"success":[{"op":"put","key":"q/z","value":"MQ=="},{"op":"put","key":"p/b","value":"Mg=="}]}`)
	a := <-done
	assert.Equal(t, http.StatusOK, a.status)
	assert.Equal(t, woke, a.index, "the answer is the view at the waking transaction")
	assert.Equal(t, []string{"p/a", "p/b"}, a.keys)

	done = rg.listPoll(t, "p/", woke)
	_, _, err := rg.fs.Delete(context.Background(), "p/a", store.Precondition{})
	require.NoError(t, err)
	a = <-done
	assert.Equal(t, http.StatusOK, a.status)
	assert.Greater(t, a.index, woke)
	assert.Equal(t, []string{"p/b"}, a.keys, "a delete under the prefix wakes it too")

	// A poll from an index that already has a change under the prefix answers at once.
	start := time.Now()
	a = <-rg.listPoll(t, "p/", i0)
	assert.Equal(t, http.StatusOK, a.status)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Equal(t, []string{"p/b"}, a.keys)
}
