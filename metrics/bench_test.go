package metrics

import (
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/raftkv/raftkv/store"
)

// What every HTTP request pays for being counted.
func BenchmarkObserveRequest(b *testing.B) {
	n := New()
	b.ReportAllocs()
	for b.Loop() {
		n.ObserveRequest("/v1/kv/{key}", "PUT", 200, 300*time.Microsecond)
	}
}

// What one scrape of a node costs: every collector, rendered as text.
func BenchmarkScrape(b *testing.B) {
	n := New()
	n.Watch(fakeSource{store.MetricsState{RaftServers: map[string]int{"voter": 3}, GossipMembers: map[string]int{"alive": 3}}})
	for _, route := range []string{"/v1/kv/{key}", "/v1/kv", "/v1/cluster", "/readyz"} {
		for _, code := range []int{200, 404, 503} {
			n.ObserveRequest(route, "GET", code, time.Millisecond)
		}
	}
	h := n.Handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		_, _ = io.Copy(io.Discard, rec.Body)
	}
}
