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

// A 5-node cluster loses 3 nodes for good. `raftkv recover` refuses while a quorum still answers; on
// the 2 survivors, stopped, it rewrites the configuration to the two of them; started again they form
// a working cluster with every write they had, and new nodes join it. Nothing else is needed.
func TestRecoverTwoSurvivorsOfFiveIntoAWorkingCluster(t *testing.T) {
	c := harness.StartCluster(t, 5, harness.Options{LogLevel: "info"})
	leader := c.Leader(t)
	const n = 50
	for i := 0; i < n; i++ {
		c.MustPut(t, leader, fmt.Sprintf("rec-%02d", i), []byte(fmt.Sprintf("v%d", i)))
	}
	// The survivors: two followers. Both have applied every acknowledged write before the loss.
	var survivors, lost []int
	for i := 0; i < 5; i++ {
		if i != leader && len(survivors) < 2 {
			survivors = append(survivors, i)
		} else {
			lost = append(lost, i)
		}
	}
	for _, s := range survivors {
		node := c.Node(s)
		harness.WaitFor(t, 20*time.Second, node.ID+" has every write", func() error {
			if r := node.GetConsistency(fmt.Sprintf("rec-%02d", n-1), "stale"); !r.OK() {
				return fmt.Errorf("%s", r)
			}
			return nil
		})
	}
	var peers []string
	for _, s := range survivors {
		peers = append(peers, c.Node(s).ID+"="+c.Node(s).RaftAddr)
	}
	recoverArgs := func(i int) []string {
		return []string{"recover", "--data-dir", c.Node(i).DataDir, "--id", c.Node(i).ID,
			"--peers", strings.Join(peers, ","), "--probe-timeout", "1s"}
	}

	// With one survivor stopped and four nodes up, a quorum answers: refused, nothing changed.
	c.Stop(survivors[0])
	out, errOut, code := harness.RunCLI(t, recoverArgs(survivors[0])...)
	require.Equal(t, 2, code, "recover must refuse while a quorum answers")
	assert.Contains(t, errOut, "a quorum of the old configuration still answers")
	assert.Contains(t, out, "still answering:")

	// Three nodes are lost for good; the other survivor is stopped for the recovery.
	for _, i := range lost {
		c.Kill9(i)
	}
	c.Stop(survivors[1])
	for _, s := range survivors {
		out, _, code := harness.RunCLI(t, recoverArgs(s)...)
		require.Equal(t, 0, code)
		assert.Contains(t, out, "recovered: the configuration is now")
		assert.Regexp(t, `this node's log: last index [1-9][0-9]*`, out)
	}
	for _, s := range survivors {
		c.Restart(s)
	}
	for _, s := range survivors {
		c.WaitReady(t, s)
	}
	for _, s := range survivors {
		for i := 0; i < n; i++ {
			r := c.Node(s).Get(fmt.Sprintf("rec-%02d", i))
			require.True(t, r.OK(), "%s: %s", c.Node(s).ID, r)
			require.Equal(t, fmt.Sprintf("v%d", i), string(r.Body))
		}
	}
	c.MustPut(t, survivors[1], "after-recovery", []byte("ok"))

	// New nodes join the recovered cluster and are promoted to voters.
	added := []int{c.AddNode(t, harness.Options{LogLevel: "info"}), c.AddNode(t, harness.Options{LogLevel: "info"})}
	for _, a := range added {
		c.WaitReady(t, a)
		r := c.Node(a).Get("after-recovery")
		require.True(t, r.OK(), "%s", r)
	}
	harness.WaitFor(t, 60*time.Second, "four voters", func() error {
		st, err := c.Node(survivors[0]).Status()
		if err != nil {
			return err
		}
		voters := 0
		for _, m := range st.Members {
			if m.Suffrage == "voter" {
				voters++
			}
		}
		if voters != 4 {
			return fmt.Errorf("%d voters: %+v", voters, st.Members)
		}
		return nil
	})
	// One of the survivors can now be lost and the cluster still writes.
	c.Stop(survivors[0])
	r := c.Node(added[0]).Put("after-one-more-loss", []byte("ok"))
	require.Equal(t, http.StatusOK, r.Status, "%s", r)
}
