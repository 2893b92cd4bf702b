package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBucketsAreContiguousAndInvert(t *testing.T) {
	require.Equal(t, int64(0), bucketLow(0))
	for i := 1; i < numBuckets; i++ {
		low := bucketLow(i)
		require.Equal(t, bucketHigh(i-1)+1, low, "bucket %d", i)
		require.Equal(t, i, bucketOf(low), "bucketOf(low(%d))", i)
		require.Equal(t, i-1, bucketOf(low-1), "bucketOf(low(%d)-1)", i)
		// Never wider than 1/128 of its lower bound: the promised relative error.
		if i < numBuckets-1 {
			width := bucketHigh(i) - low + 1
			require.LessOrEqual(t, float64(width-1), float64(low)/128, "bucket %d [%d, %d]", i, low, bucketHigh(i))
		}
	}
	require.Equal(t, numBuckets-1, bucketOf(math.MaxInt64))
}

func TestQuantilesWithinOnePercent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dist := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-10ms", func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }},
		{"lognormal around 1ms", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*1.5) * float64(time.Millisecond))
		}},
		{"small integers", func() time.Duration { return time.Duration(rng.IntN(300)) }},
	} {
		t.Run(dist.name, func(t *testing.T) {
			h := NewHistogram()
			samples := make([]time.Duration, 100_000)
			for i := range samples {
				samples[i] = dist.gen()
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
				rank := max(int(math.Ceil(q*float64(len(samples)))), 1)
				exact := samples[rank-1]
				got := h.Quantile(q)
				require.GreaterOrEqual(t, got, exact, "q=%g", q)
				require.LessOrEqual(t, float64(got-exact), float64(exact)/100, "q=%g: got %v, exact %v", q, got, exact)
			}
			require.Equal(t, samples[0], h.Min())
			require.Equal(t, samples[len(samples)-1], h.Max())
			require.Equal(t, uint64(len(samples)), h.Count())
		})
	}
}

func TestMergeEqualsRecordingEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := range 50_000 {
		d := time.Duration(rng.Int64N(int64(time.Second)))
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		all.Record(d)
	}
	a.Merge(b)
	require.Equal(t, all.counts, a.counts)
	require.Equal(t, all.Count(), a.Count())
	require.Equal(t, all.Min(), a.Min())
	require.Equal(t, all.Max(), a.Max())
	require.InDelta(t, float64(all.Mean()), float64(a.Mean()), 1)

	a.Reset()
	require.Zero(t, a.Count())
	require.Zero(t, a.Quantile(0.5))
	a.Merge(NewHistogram()) // merging an empty histogram keeps min/max sane
	a.Record(5)
	require.Equal(t, time.Duration(5), a.Min())
	require.Equal(t, time.Duration(5), a.Quantile(0.99))
}

func TestRecordClampsNegative(t *testing.T) {
	h := NewHistogram()
	h.Record(-time.Second)
	require.Equal(t, time.Duration(0), h.Max())
	require.Equal(t, time.Duration(0), h.Quantile(0.5))
}

// BenchmarkHistogramRecord is the per-operation cost the runner adds to every measured request.
func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	rng := rand.New(rand.NewPCG(5, 6))
	vals := make([]time.Duration, 1024)
	for i := range vals {
		vals[i] = time.Duration(math.Exp(rng.NormFloat64()) * float64(time.Millisecond))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h.Record(vals[i&1023])
	}
}

func BenchmarkHistogramMerge(b *testing.B) {
	h, o := NewHistogram(), NewHistogram()
	for i := range 1000 {
		o.Record(time.Duration(i) * time.Microsecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.Merge(o)
	}
}
