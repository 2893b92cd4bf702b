package metrics

import (
	armon "github.com/armon/go-metrics"
	armonprom "github.com/armon/go-metrics/prometheus"
	gometrics "github.com/hashicorp/go-metrics"
	gometricsprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// BridgeGoMetrics sends what hashicorp/raft and memberlist (github.com/hashicorp/go-metrics) and
// raft-boltdb (github.com/armon/go-metrics, through go-metrics' compat package) report into reg, under
// raftkv_: raftkv_raft_*, raftkv_memberlist_*, raftkv_raft_boltdb_*. Those libraries report to a
// process-wide sink, so this replaces it for the whole process: call it once, for the one node a
// process runs. Runtime and hostname options are off: the Go collector already reports the runtime, and
// a hostname in a metric's name would break every query across nodes.
func BridgeGoMetrics(reg prometheus.Registerer) error {
	hsink, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{
		Registerer: reg, Name: "raftkv_gometrics_bridge",
	})
	if err != nil {
		return err
	}
	hc := gometrics.DefaultConfig("raftkv")
	hc.EnableHostname, hc.EnableHostnameLabel, hc.EnableRuntimeMetrics = false, false, false
	if _, err := gometrics.NewGlobal(hc, hsink); err != nil {
		return err
	}
	asink, err := armonprom.NewPrometheusSinkFrom(armonprom.PrometheusOpts{
		Registerer: reg, Name: "raftkv_armon_metrics_bridge",
	})
	if err != nil {
		return err
	}
	ac := armon.DefaultConfig("raftkv")
	ac.EnableHostname, ac.EnableHostnameLabel, ac.EnableRuntimeMetrics = false, false, false
	_, err = armon.NewGlobal(ac, asink)
	return err
}
