package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeMembers applies every add, but loses the answer of the first (as a timed-out add does).
type fakeMembers struct {
	members []*etcdserverpb.Member
	adds    int
}

func (f *fakeMembers) MemberList(context.Context, ...clientv3.OpOption) (*clientv3.MemberListResponse, error) {
	return &clientv3.MemberListResponse{Members: f.members}, nil
}

func (f *fakeMembers) MemberAddAsLearner(_ context.Context, peers []string) (*clientv3.MemberAddResponse, error) {
	f.adds++
	m := &etcdserverpb.Member{ID: uint64(100 + f.adds), PeerURLs: peers, IsLearner: true}
	f.members = append(f.members, m)
	if f.adds == 1 {
		return nil, context.DeadlineExceeded
	}
	return &clientv3.MemberAddResponse{Member: m}, nil
}

// A learner add whose answer was lost is found in the member list, not added a second time.
func TestAddLearnerOnceAfterALostAnswer(t *testing.T) {
	f := &fakeMembers{members: []*etcdserverpb.Member{{ID: 1, PeerURLs: []string{"http://127.0.0.1:1"}}}}
	id, err := addLearnerOnce(context.Background(), f, nil, "http://127.0.0.1:2")
	require.NoError(t, err)
	require.Equal(t, uint64(101), id)
	require.Equal(t, 1, f.adds, "the lost add was applied; it must not be repeated")
	require.Len(t, f.members, 2)
}
