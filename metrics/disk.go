package metrics

import "github.com/prometheus/client_golang/prometheus"

// WatchDisk reports the free and total bytes of the file system holding the data dir, read at each
// scrape: a full disk stops Raft's log writes, and the alert should come before that.
func (n *Node) WatchDisk(dataDir string) { n.reg.MustRegister(&diskCollector{dir: dataDir}) }

var (
	diskFreeDesc = prometheus.NewDesc("raftkv_disk_data_dir_free_bytes",
		"Bytes available to the node on the file system holding its data dir.", nil, nil)
	diskTotalDesc = prometheus.NewDesc("raftkv_disk_data_dir_total_bytes",
		"Size of the file system holding the node's data dir.", nil, nil)
)

type diskCollector struct{ dir string }

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- diskFreeDesc
	ch <- diskTotalDesc
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	free, total, err := diskSpace(c.dir)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(diskFreeDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(diskFreeDesc, prometheus.GaugeValue, float64(free))
	ch <- prometheus.MustNewConstMetric(diskTotalDesc, prometheus.GaugeValue, float64(total))
}
