package metrics

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSSource is what the TLS collector reads; *tlsutil.Source satisfies it.
type TLSSource interface {
	Expiry() time.Time
	Reloads() uint64
}

// WatchTLS exports, per port ("api", "peer"), when its certificate expires and how often its files were
// reloaded: an operator alerts on the first well before it passes, and sees a rotation land in the second.
func (n *Node) WatchTLS(sources map[string]TLSSource) {
	if len(sources) > 0 {
		n.reg.MustRegister(&tlsCollector{sources: sources})
	}
}

var (
	tlsExpiryDesc = prometheus.NewDesc("raftkv_tls_cert_expiry_timestamp_seconds",
		"When the certificate this node serves on the port expires (Unix time).", []string{"port"}, nil)
	tlsReloadsDesc = prometheus.NewDesc("raftkv_tls_reloads_total",
		"Times the port's certificate, key or CA files were loaded again after a change.", []string{"port"}, nil)
)

type tlsCollector struct{ sources map[string]TLSSource }

func (c *tlsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tlsExpiryDesc
	ch <- tlsReloadsDesc
}

func (c *tlsCollector) Collect(ch chan<- prometheus.Metric) {
	ports := make([]string, 0, len(c.sources))
	for p := range c.sources {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	for _, p := range ports {
		src := c.sources[p]
		if exp := src.Expiry(); !exp.IsZero() {
			ch <- prometheus.MustNewConstMetric(tlsExpiryDesc, prometheus.GaugeValue, float64(exp.Unix()), p)
		}
		ch <- prometheus.MustNewConstMetric(tlsReloadsDesc, prometheus.CounterValue, float64(src.Reloads()), p)
	}
}
