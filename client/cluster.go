package client

import (
	"context"
	"net/http"
	"net/url"
)

// Status is the cluster as one node sees it (GET /v1/cluster).
type Status struct {
	NodeID       string   `json:"node_id"`
	State        string   `json:"state"`
	Leader       *Member  `json:"leader"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastIndex    uint64   `json:"last_log_index"`
	Members      []Member `json:"members"`
}

// Member is one node: its addresses, Raft suffrage and gossip state.
type Member struct {
	ID          string `json:"id"`
	RaftAddr    string `json:"raft_addr"`
	HTTPAddr    string `json:"http_addr,omitempty"`
	GossipAddr  string `json:"gossip_addr,omitempty"`
	Suffrage    string `json:"suffrage"`
	GossipState string `json:"gossip_state"`
	Leader      bool   `json:"leader"`
}

// Status returns the cluster view of the node that answers.
func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/cluster"})
	if err != nil {
		return Status{}, err
	}
	var st Status
	return st, decodeJSON(resp, &st)
}

// Members returns the cluster's members as the answering node sees them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	st, err := c.Status(ctx)
	return st.Members, err
}

// RemoveMember removes member id from the cluster (errors.Is ErrNotFound if it is not a member). It
// carries no idempotency key (membership is not a KV write), so it is not retried once it may have
// reached a node: a retry of a removal that took effect would answer not found.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: "/v1/cluster/members/" + url.PathEscape(id), write: true})
	return err
}
