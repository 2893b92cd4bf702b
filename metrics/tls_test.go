package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

type fakeTLS struct {
	exp     time.Time
	reloads uint64
}

func (f fakeTLS) Expiry() time.Time { return f.exp }
func (f fakeTLS) Reloads() uint64   { return f.reloads }

func TestTLSMetricsNameEachPortsExpiryAndReloads(t *testing.T) {
	n := New()
	n.WatchTLS(map[string]TLSSource{
		"api":  fakeTLS{exp: time.Unix(2000000000, 0), reloads: 2},
		"peer": fakeTLS{exp: time.Unix(2100000000, 0)},
	})
	want := `
# HELP raftkv_tls_cert_expiry_timestamp_seconds When the certificate this node serves on the port expires (Unix time).
# TYPE raftkv_tls_cert_expiry_timestamp_seconds gauge
raftkv_tls_cert_expiry_timestamp_seconds{port="api"} 2e+09
raftkv_tls_cert_expiry_timestamp_seconds{port="peer"} 2.1e+09
# HELP raftkv_tls_reloads_total Times the port's certificate, key or CA files were loaded again after a change.
# TYPE raftkv_tls_reloads_total counter
raftkv_tls_reloads_total{port="api"} 2
raftkv_tls_reloads_total{port="peer"} 0
`
	require.NoError(t, testutil.GatherAndCompare(n.Registry(), strings.NewReader(want),
		"raftkv_tls_cert_expiry_timestamp_seconds", "raftkv_tls_reloads_total"))
}
