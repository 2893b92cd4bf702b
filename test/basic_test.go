package test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// Writes through every node are readable through every node, linearizably at once and stale
// eventually; lists by prefix page through them in order; overwrite, cas and delete behave.
func TestWriteAndReadThroughEveryNode(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	c.Leader(t)

	want := map[string]written{}
	var last uint64
	for i := 0; i < 3; i++ {
		for j := 0; j < 5; j++ {
			key, value := fmt.Sprintf("every-n%d-%d", i+1, j), fmt.Sprintf("value %d via n%d", j, i+1)
			r := c.MustPut(t, i, key, []byte(value))
			require.Greater(t, r.Index, last, "sequential writes get increasing indexes")
			last = r.Index
			want[key] = written{value, r.Index}
		}
	}

	for i := 0; i < 3; i++ {
		node := c.Node(i)
		for key, w := range want {
			require.NoError(t, checkGet(node, key, w, "linearizable"))
			r := node.Get(key)
			assert.Equal(t, w.index, r.CreateIndex, "create index of %s", key)
		}
		harness.WaitFor(t, 10*time.Second, node.ID+" stale reads", func() error {
			for key, w := range want {
				if err := checkGet(node, key, w, "stale"); err != nil {
					return err
				}
			}
			return nil
		})
		require.NoError(t, checkList(node, "every-", 0, "", want))
		require.NoError(t, checkList(node, "every-", 4, "linearizable", want), "paged by 4")
		one := map[string]written{}
		for k, w := range want {
			if strings.HasPrefix(k, "every-n2-") {
				one[k] = w
			}
		}
		require.NoError(t, checkList(node, "every-n2-", 2, "", one))
		harness.WaitFor(t, 10*time.Second, node.ID+" stale list", func() error { return checkList(node, "every-", 3, "stale", want) })
	}

	// Overwrite through n2, read through n3: new value and mod index, create index kept.
	key := "every-n1-0"
	created := want[key].index
	r := c.MustPut(t, 1, key, []byte("overwritten"))
	g := c.Node(2).Get(key)
	require.Equal(t, 200, g.Status, "%v", g)
	assert.Equal(t, "overwritten", string(g.Body))
	assert.Equal(t, r.Index, g.ModIndex)
	assert.Equal(t, created, g.CreateIndex)

	// cas through a follower: 0 on an existing key fails with the current index; the right one wins.
	cas := c.Node(0).CAS(key, 0, []byte("nope"))
	require.Equal(t, http.StatusConflict, cas.Status, "%v", cas)
	assert.Equal(t, "cas_mismatch", cas.Code)
	assert.Equal(t, r.Index, cas.CurrentIndex)
	cas = c.Node(0).CAS(key, r.Index, []byte("cas won"))
	require.Equal(t, 200, cas.Status, "%v", cas)
	assert.Greater(t, cas.Index, r.Index)
	stale := c.Node(2).CAS(key, r.Index, []byte("stale cas"))
	require.Equal(t, http.StatusConflict, stale.Status, "%v", stale)
	assert.Equal(t, cas.Index, stale.CurrentIndex)
	created2 := c.Node(1).CAS("every-new", 0, []byte("created"))
	require.Equal(t, 200, created2.Status, "%v", created2)

	// Delete through n3, then every node says 404 key_not_found; deleting again deletes nothing.
	d := c.Node(2).Delete(key)
	require.Equal(t, 200, d.Status, "%v", d)
	assert.True(t, d.Deleted)
	assert.Greater(t, d.Index, cas.Index)
	for i := 0; i < 3; i++ {
		require.NoError(t, errorJSON(c.Node(i).Get(key), http.StatusNotFound, "key_not_found"))
	}
	d = c.Node(0).Delete(key)
	require.Equal(t, 200, d.Status, "%v", d)
	assert.False(t, d.Deleted)
	dc := c.Node(1).DeleteCAS("every-new", created2.Index+1000)
	require.Equal(t, http.StatusConflict, dc.Status, "%v", dc)
	assert.Equal(t, created2.Index, dc.CurrentIndex)
	dc = c.Node(1).DeleteCAS("every-new", created2.Index)
	require.Equal(t, 200, dc.Status, "%v", dc)
	assert.True(t, dc.Deleted)
}

// Malformed requests get the documented status and a JSON error end to end, and change nothing.
func TestBadInputEndToEnd(t *testing.T) {
	const maxValue = 1024
	c := harness.StartCluster(t, 1, harness.Options{MaxValueSize: maxValue})
	n := c.Node(0)

	big := []byte(strings.Repeat("x", maxValue+1))
	require.NoError(t, errorJSON(n.Put("big", big), http.StatusRequestEntityTooLarge, "value_too_large"))
	require.NoError(t, errorJSON(n.CAS("big", 0, big), http.StatusRequestEntityTooLarge, "value_too_large"))
	require.NoError(t, errorJSON(n.Get("big"), http.StatusNotFound, "key_not_found"), "an oversize value writes nothing")
	entries, err := n.ListAll("big", 0, "")
	require.NoError(t, err)
	assert.Empty(t, entries)
	ok := n.Put("big", big[:maxValue])
	require.Equal(t, 200, ok.Status, "a value of exactly --max-value-size is accepted: %v", ok)

	r := n.Do(http.MethodPost, "/v1/kv/some-key", []byte("v"))
	require.NoError(t, errorJSON(r, http.StatusMethodNotAllowed, "method_not_allowed"))
	assert.NotEmpty(t, r.Header.Get("Allow"), "405 carries Allow")
	require.NoError(t, errorJSON(n.Do(http.MethodPatch, "/v1/cluster", nil), http.StatusMethodNotAllowed, "method_not_allowed"))

	require.NoError(t, errorJSON(n.Do(http.MethodPut, "/v1/kv/", []byte("v")), http.StatusBadRequest, "invalid_key"))
	require.NoError(t, errorJSON(n.Put(strings.Repeat("k", 1025), []byte("v")), http.StatusBadRequest, "invalid_key"))
	require.NoError(t, errorJSON(n.Do(http.MethodPut, "/v1/kv/k?cas=abc", []byte("v")), http.StatusBadRequest, "invalid_parameter"))
	require.NoError(t, errorJSON(n.GetConsistency("k", "bogus"), http.StatusBadRequest, "invalid_parameter"))
	require.NoError(t, errorJSON(n.Do(http.MethodGet, "/v1/kv?limit=-1", nil), http.StatusBadRequest, "invalid_parameter"))

	require.NoError(t, errorJSON(n.RemoveMember("no-such-node"), http.StatusNotFound, "unknown_member"))
	require.NoError(t, errorJSON(n.Do(http.MethodGet, "/v1/no-such-thing", nil), http.StatusNotFound, "not_found"))

	// Nothing above wrote anything but the one accepted value.
	entries, err = n.ListAll("", 0, "")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "big", entries[0].Key)
	assert.Equal(t, ok.Index, entries[0].ModIndex)
}
