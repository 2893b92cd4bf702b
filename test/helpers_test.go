package test

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/test/harness"
)

// written is an acknowledged write: the value and the index the PUT returned.
type written struct {
	value string
	index uint64
}

// putMany writes n keys prefix+%05d with distinct values through node i, from `workers`
// goroutines, retrying each key until its write is acknowledged. It returns what was written.
func putMany(t *testing.T, c *harness.Cluster, i int, prefix string, n, workers int) map[string]written {
	t.Helper()
	node := c.Node(i)
	var (
		mu   sync.Mutex
		out  = make(map[string]written, n)
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				key, value := fmt.Sprintf("%s%05d", prefix, k), fmt.Sprintf("%s%05d-value-%d", prefix, k, time.Now().UnixNano())
				var resp *harness.Response
				err := harness.Poll(harness.LeaderTimeout, func() error {
					resp = node.Put(key, []byte(value))
					if resp.Outcome() != harness.Applied {
						return fmt.Errorf("%v", resp)
					}
					return nil
				})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					out[key] = written{value, resp.Index}
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for k := 0; k < n; k++ {
		next <- k
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("putMany %s: %d writes failed, first: %v", prefix, len(errs), errs[0])
	}
	t.Logf("wrote %d keys %s* through %s in %v", n, prefix, node.ID, time.Since(start).Round(time.Millisecond))
	checkUniqueIndexes(t, out)
	return out
}

func checkUniqueIndexes(t *testing.T, ws map[string]written) {
	t.Helper()
	seen := map[uint64]string{}
	for k, w := range ws {
		if w.index == 0 {
			t.Errorf("write of %s acknowledged with index 0", k)
		}
		if other, dup := seen[w.index]; dup {
			t.Errorf("writes of %s and %s both got index %d", k, other, w.index)
		}
		seen[w.index] = k
	}
}

// checkGet returns nil when node serves key with the written value and mod index.
func checkGet(node *harness.Node, key string, want written, consistency string) error {
	r := node.GetConsistency(key, consistency)
	switch {
	case r.Err != nil || r.Status != 200:
		return fmt.Errorf("%s: %v", node.ID, r)
	case string(r.Body) != want.value:
		return fmt.Errorf("%s: %s read %q, want %q", node.ID, key, r.Body, want.value)
	case r.ModIndex != want.index:
		return fmt.Errorf("%s: %s has mod index %d, want %d (the PUT's index)", node.ID, key, r.ModIndex, want.index)
	}
	return nil
}

// checkList returns nil when listing prefix on node gives exactly want (values and mod indexes),
// in key order. It pages with the given limit.
func checkList(node *harness.Node, prefix string, limit int, consistency string, want map[string]written) error {
	entries, err := node.ListAll(prefix, limit, consistency)
	if err != nil {
		return fmt.Errorf("%s: list %q: %w", node.ID, prefix, err)
	}
	if !sort.SliceIsSorted(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key }) {
		return fmt.Errorf("%s: list %q is not in key order", node.ID, prefix)
	}
	got := map[string]bool{}
	var problems []string
	for _, e := range entries {
		if got[e.Key] {
			problems = append(problems, "listed twice: "+e.Key)
		}
		got[e.Key] = true
		w, ok := want[e.Key]
		switch {
		case !strings.HasPrefix(e.Key, prefix):
			problems = append(problems, fmt.Sprintf("%s does not have prefix %q", e.Key, prefix))
		case !ok:
			problems = append(problems, "unexpected key "+e.Key)
		case !bytes.Equal(e.Value, []byte(w.value)) || e.ModIndex != w.index:
			problems = append(problems, fmt.Sprintf("%s = %q@%d, want %q@%d", e.Key, e.Value, e.ModIndex, w.value, w.index))
		}
	}
	for k := range want {
		if !got[k] {
			problems = append(problems, "missing "+k)
		}
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("... %d more", len(problems)-5))
		}
		return fmt.Errorf("%s: list %q (%d entries, want %d): %s", node.ID, prefix, len(entries), len(want), strings.Join(problems, "; "))
	}
	return nil
}

// others returns the indexes below n except skip.
func others(n int, skip ...int) []int {
	var out []int
outer:
	for i := 0; i < n; i++ {
		for _, s := range skip {
			if i == s {
				continue outer
			}
		}
		out = append(out, i)
	}
	return out
}

// raftMembersEqual returns nil when node's view of the Raft configuration is exactly ids, all voters.
func raftVoters(node *harness.Node, ids ...string) error {
	st, err := node.Status()
	if err != nil {
		return err
	}
	got := st.RaftMembers()
	sort.Strings(got)
	want := append([]string(nil), ids...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		return fmt.Errorf("%s sees raft members %v, want %v (members: %s)", node.ID, got, want, describeMembers(st))
	}
	for _, id := range ids {
		if m := st.Member(id); m.Suffrage != "voter" {
			return fmt.Errorf("%s sees %s as %s", node.ID, id, m.Suffrage)
		}
	}
	return nil
}

func describeMembers(st *harness.ClusterStatus) string {
	var parts []string
	for _, m := range st.Members {
		parts = append(parts, fmt.Sprintf("%s %s/%s", m.ID, m.Suffrage, m.GossipState))
	}
	return strings.Join(parts, ", ")
}

// errorJSON checks an error response: status, JSON body with a message and the code.
func errorJSON(r *harness.Response, status int, code string) error {
	if r.Err != nil {
		return r.Err
	}
	var problems []string
	if r.Status != status {
		problems = append(problems, fmt.Sprintf("status %d, want %d", r.Status, status))
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		problems = append(problems, fmt.Sprintf("Content-Type %q, want application/json", ct))
	}
	if r.Code != code {
		problems = append(problems, fmt.Sprintf("code %q, want %q", r.Code, code))
	}
	if r.Error == "" {
		problems = append(problems, "no error message")
	}
	if len(problems) > 0 {
		return errors.New(r.Method + " " + r.Path + ": " + strings.Join(problems, ", ") + ": " + string(r.Body))
	}
	return nil
}
