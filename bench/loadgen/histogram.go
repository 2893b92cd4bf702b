package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram is a log-linear latency histogram in the manner of HdrHistogram: values (nanoseconds) below
// 2^(precisionBits+1) get a bucket each, and every power-of-two range above is cut into 2^precisionBits
// equal buckets. A bucket is never wider than 1/2^precisionBits = 1/128 of its lower bound, so a quantile
// read back is within 0.8% of the true sample, at any scale from nanoseconds to hours, in a fixed 57 KiB.
// A sorted slice of every sample would be exact, but costs memory per operation and a sort at the end.
//
// Recording is a shift, an add and an increment, with no allocation and no lock: each worker owns a
// Histogram, and the runner merges them at the end (Merge is exact: same buckets, counts added).
// The zero value is not usable; call NewHistogram.
type Histogram struct {
	counts []uint64
	total  uint64
	sum    float64 // nanoseconds; a float so that hours of samples cannot overflow
	min    int64
	max    int64
}

const (
	precisionBits = 7                        // 2^7 = 128 buckets per power of two: relative error < 1/128
	exactBelow    = 1 << (precisionBits + 1) // values below this have a bucket each
	// numBuckets covers every non-negative int64: the largest shift is 63-(precisionBits+1).
	numBuckets = (64 - precisionBits) << precisionBits
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, numBuckets), min: math.MaxInt64}
}

// bucketOf maps v >= 0 to its bucket. Above the exact range, shift drops all but the top
// precisionBits+1 bits of v; the remaining mantissa is in [2^precisionBits, 2^(precisionBits+1)), so
// shift<<precisionBits + mantissa numbers the buckets contiguously from exactBelow upwards.
func bucketOf(v int64) int {
	if v < exactBelow {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - (precisionBits + 1)
	return shift<<precisionBits + int(v>>shift)
}

// bucketLow is the smallest value in bucket i (the inverse of bucketOf), bucketHigh the largest.
func bucketLow(i int) int64 {
	if i < exactBelow {
		return int64(i)
	}
	shift := i>>precisionBits - 1
	mant := int64(i - shift<<precisionBits)
	return mant << shift
}

func bucketHigh(i int) int64 {
	if i+1 >= numBuckets {
		return math.MaxInt64
	}
	return bucketLow(i+1) - 1
}

// Record adds one sample. Negative durations (a clock step) count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)]++
	h.total++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Reset empties h, keeping its memory.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.total, h.sum, h.min, h.max = 0, 0, math.MaxInt64, 0
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.total }

// Min and Max are exact.
func (h *Histogram) Min() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.min)
}

func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is exact (up to float rounding).
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the value at quantile q in [0, 1]: the smallest bucket value such that at least
// q of the samples are at or below the bucket, reported as the bucket's highest value (like
// HdrHistogram's "highest equivalent value", so a percentile never understates) and clamped to the
// exact min and max. Quantile(1) is the exact maximum.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(bucketHigh(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}
