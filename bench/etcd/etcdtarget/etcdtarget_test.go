package etcdtarget

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startEtcd runs a single-member etcd in this process, removed when the test ends.
func startEtcd(t *testing.T) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu, pu := url.URL{Scheme: "http", Host: freeAddr(t)}, url.URL{Scheme: "http", Host: freeAddr(t)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	return cu.Host
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func TestPutAndReadBothWays(t *testing.T) {
	ep := startEtcd(t)
	c, err := Dial([]string{ep, "http://" + ep}) // two clients to one member: spread still works
	require.NoError(t, err)
	defer c.Close()
	for _, serializable := range []bool{false, true} {
		f, err := c.Factory(loadgen.Spread, serializable)
		require.NoError(t, err)
		res, err := loadgen.Run(context.Background(), loadgen.Config{Op: loadgen.OpMixed, ReadRatio: 0.5,
			Concurrency: 4, Duration: 300 * time.Millisecond, Keys: 20, NewTarget: f})
		require.NoError(t, err)
		require.Zero(t, res.Errors, res.ErrorKinds)
		require.Positive(t, res.GetLatency.Count)
		require.Positive(t, res.PutLatency.Count)
	}
	got, err := c.Member(0).Get(context.Background(), "bench/19")
	require.NoError(t, err)
	require.Len(t, got.Kvs, 1)
	require.Len(t, got.Kvs[0].Value, loadgen.DefaultValueSize)
}

func TestErrorKinds(t *testing.T) {
	ep := startEtcd(t)
	c, err := Dial([]string{ep})
	require.NoError(t, err)
	defer c.Close()
	f, err := c.Factory(loadgen.Pin, false)
	require.NoError(t, err)
	tg, err := f(0)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = tg.Get(ctx, "k")
	require.Error(t, err)
	require.Equal(t, "canceled", loadgen.ErrorKind(err))

	// A request over the server's limit (1.5 MiB) but under the client's (2 MiB) is refused by the server
	// with an etcd error.
	err = tg.Put(context.Background(), "big", make([]byte, 1700<<10))
	require.Error(t, err)
	require.Contains(t, loadgen.ErrorKind(err), "etcd ")
}
