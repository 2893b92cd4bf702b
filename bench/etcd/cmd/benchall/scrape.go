package main

// scrape.go: the "/metrics scraped" rows (issue 15: metrics must cost nothing visible). While such a
// row runs, a scraper fetches every node's /metrics once a second, as a Prometheus server with a 1 s
// scrape interval would; the row sits beside the same workload without it, in the same run. etcd serves
// /metrics on its client URL and is scraped the same way; the ceiling has no metrics and skips the rows.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// scrapeInterval is Prometheus's most aggressive usual setting (the default is 1 m, etcd's docs 15 s).
const scrapeInterval = time.Second

// scrapeStats is what the scraper did during a row.
type scrapeStats struct {
	scrapes  int
	failures int
	bytes    int64         // exposition bytes read, all nodes
	took     time.Duration // total time of the scrapes that succeeded
}

// startScraping scrapes http://addr/metrics of every addr once per scrapeInterval until the returned
// stop is called; stop returns what was done. A scrape is bounded by the interval, so a slow node
// never makes scrapes pile up.
func startScraping(ctx context.Context, addrs []string) (stop func() scrapeStats) {
	ctx, cancel := context.WithCancel(ctx)
	hc := &http.Client{Timeout: scrapeInterval}
	var (
		mu sync.Mutex
		st scrapeStats
		wg sync.WaitGroup
	)
	scrapeOne := func(addr string) {
		defer wg.Done()
		began := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
		if err != nil {
			return
		}
		resp, err := hc.Do(req)
		var n int64
		if err == nil {
			n, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			return // cut short by stop: not a failure of the node
		}
		st.scrapes++
		if err != nil {
			st.failures++
			return
		}
		st.bytes += n
		st.took += time.Since(began)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(scrapeInterval)
		defer tick.Stop()
		for {
			for _, a := range addrs {
				wg.Add(1)
				go scrapeOne(a)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() scrapeStats {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return st
	}
}

func (s scrapeStats) String() string {
	if s.scrapes == 0 {
		return "no scrapes"
	}
	ok := s.scrapes - s.failures
	avg := time.Duration(0)
	if ok > 0 {
		avg = s.took / time.Duration(ok)
	}
	return fmt.Sprintf("%d scrapes (%d failed), %d KiB each on average, %s each", s.scrapes, s.failures,
		s.bytes/int64(max(ok, 1))/1024, avg.Round(100*time.Microsecond))
}
