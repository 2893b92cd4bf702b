package watch

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
)

func put(key, value string) fsm.Change { return fsm.Change{Key: key, Value: []byte(value)} }

func indexes(evs []Event) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Index)
	}
	return out
}

func TestReadFromAnIndexSeesEveryMatchingChangeOnce(t *testing.T) {
	h := New(Config{})
	h.Changed(1, []fsm.Change{put("a/1", "x")})
	h.Changed(2, nil) // a write that changed nothing still moves the index
	h.Changed(3, []fsm.Change{put("b", "y")})
	h.Changed(4, []fsm.Change{put("a/2", "z"), put("b", "w"), {Delete: true, Key: "a/1"}})

	f := &Filter{Prefix: "a/", IsPrefix: true}
	evs, through, err := h.Read(1, f, 0)
	require.NoError(t, err)
	assert.Equal(t, []uint64{1, 4}, indexes(evs))
	assert.Equal(t, uint64(4), through)
	require.Len(t, evs[1].Changes, 2, "a transaction's matching changes arrive together, in order")
	assert.Equal(t, "a/2", evs[1].Changes[0].Key)
	assert.True(t, evs[1].Changes[1].Delete)

	evs, through, err = h.Read(through+1, f, 0)
	require.NoError(t, err)
	assert.Empty(t, evs)
	assert.Equal(t, uint64(4), through)

	evs, _, err = h.Read(2, &Filter{Key: "b"}, 0)
	require.NoError(t, err)
	assert.Equal(t, []uint64{3, 4}, indexes(evs))

	evs, _, err = h.Read(1, &Filter{IsPrefix: true, NoPut: true}, 0)
	require.NoError(t, err)
	assert.Equal(t, []uint64{4}, indexes(evs))
	assert.Len(t, evs[0].Changes, 1)

	// A page limit ends through before the first event left out, so the next read starts at it.
	evs, through, err = h.Read(1, &Filter{IsPrefix: true}, 2)
	require.NoError(t, err)
	assert.Equal(t, []uint64{1, 3}, indexes(evs))
	assert.Equal(t, uint64(3), through)
}

func TestAnIndexOlderThanTheHistoryIsCompactedNeverSkipped(t *testing.T) {
	now := time.Unix(1000, 0)
	h := New(Config{History: time.Minute, HistoryBytes: 1 << 20, Now: func() time.Time { return now }})
	h.Changed(1, []fsm.Change{put("k", "1")})
	now = now.Add(2 * time.Minute)
	h.Changed(2, []fsm.Change{put("k", "2")})

	_, _, err := h.Read(1, &Filter{Key: "k"}, 0)
	var ce *CompactedError
	require.ErrorAs(t, err, &ce)
	assert.True(t, errors.Is(err, ErrCompacted))
	assert.Equal(t, CompactedError{Requested: 1, CompactIndex: 1, CurrentIndex: 2}, *ce)

	evs, _, err := h.Read(2, &Filter{Key: "k"}, 0)
	require.NoError(t, err)
	assert.Equal(t, []uint64{2}, indexes(evs))
}

func TestHistoryBytesBoundDropsTheOldest(t *testing.T) {
	h := New(Config{HistoryBytes: 10_000})
	for i := uint64(1); i <= 1000; i++ {
		h.Changed(i, []fsm.Change{put(fmt.Sprintf("k%04d", i), "0123456789")})
	}
	st := h.Stats()
	assert.LessOrEqual(t, st.Bytes, int64(10_000))
	assert.Greater(t, st.Events, 10)
	assert.Equal(t, uint64(1000)-uint64(st.Events), st.Compact)
	evs, _, err := h.Read(st.Compact+1, &Filter{IsPrefix: true}, 0)
	require.NoError(t, err)
	assert.Len(t, evs, st.Events)
}

// A snapshot install replaces the state: a reader that still needs a change before it cannot be served.
func TestRestoreCompactsEverythingBeforeTheSnapshot(t *testing.T) {
	h := New(Config{})
	h.Changed(1, []fsm.Change{put("k", "1")})
	wake := h.Wake()
	h.Restored(10)
	select {
	case <-wake:
	default:
		t.Fatal("a restore must wake waiting readers")
	}
	_, _, err := h.Read(2, &Filter{Key: "k"}, 0)
	require.ErrorIs(t, err, ErrCompacted)
	_, through, err := h.Read(11, &Filter{Key: "k"}, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(10), through)
	h.Changed(5, []fsm.Change{put("k", "old")}) // replay below the snapshot: ignored
	evs, _, _ := h.Read(11, &Filter{Key: "k"}, 0)
	assert.Empty(t, evs)
}

// The apply path never waits for a reader: nobody reading, a thousand changes still go in at once.
func TestChangedNeverWaitsForReaders(t *testing.T) {
	h := New(Config{})
	wakes := make([]<-chan struct{}, 100)
	for i := range wakes {
		wakes[i] = h.Wake()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(1); i <= 1000; i++ {
			h.Changed(i, []fsm.Change{put("k", "v")})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed blocked")
	}
	for _, w := range wakes {
		<-w
	}
}

// Readers scan outside the lock while Changed appends, trims and compacts: the race detector checks
// that no record a reader may see is ever written again, and every read is still exact.
func TestReadersScanWhileApplyAppendsAndTrims(t *testing.T) {
	h := New(Config{HistoryBytes: 200 << 10})
	done := make(chan struct{})
	var readers sync.WaitGroup
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			next := uint64(1)
			for {
				select {
				case <-done:
					return
				default:
				}
				evs, through, err := h.Read(next, &Filter{IsPrefix: true}, 100)
				if errors.Is(err, ErrCompacted) {
					compact, _ := h.Bounds()
					next = compact + 1
					continue
				}
				for _, e := range evs {
					if e.Index < next || e.Changes[0].Key != fmt.Sprintf("k%d", e.Index) {
						t.Errorf("read %d (%s) from %d", e.Index, e.Changes[0].Key, next)
						return
					}
					next = e.Index + 1
				}
				next = max(next, through+1)
			}
		}()
	}
	for i := uint64(1); i <= 20000; i++ {
		h.Changed(i, []fsm.Change{put(fmt.Sprintf("k%d", i), "0123456789")})
		if i == 10000 {
			h.Restored(10500)
		}
	}
	close(done)
	readers.Wait()
}
