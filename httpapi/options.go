package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/watch"
)

// Defaults for the zero Options.
const (
	DefaultMaxValueSize     int64 = 1 << 20
	DefaultMaxKeySize             = 1024
	DefaultDefaultListLimit       = 1000
	DefaultMaxListLimit           = 10000
)

// Options tune the API. The zero value (any field 0) means the defaults above.
type Options struct {
	MaxValueSize     int64 // largest PUT body in bytes; default 1 MiB
	MaxKeySize       int   // longest key in bytes; default 1024
	DefaultListLimit int   // entries per list page when no limit= is given; default 1000
	MaxListLimit     int   // largest accepted limit=; default 10000
	EnablePprof      bool  // mount net/http/pprof under /debug/pprof/
	// Metrics, if set, is served at GET /metrics (the Prometheus exposition format).
	Metrics http.Handler
	// Console, if set, serves the web console under /ui/ (and / redirects there). httpapi routes to it
	// and knows nothing else about it: the console is a client of this API like any other.
	Console http.Handler
	// Keyring, if set, serves the gossip keyring at /v1/operator/keyring.
	Keyring Keyring
	// Observer, if set, is told about every request: its route pattern, method, status and duration;
	// and, if it is an ACLObserver, about every request the ACLs refused.
	Observer RequestObserver
	// ACLEnabled: every request but the open ones (see routes in authz.go) needs a token allowed to do it.
	ACLEnabled bool

	// Watch, if set, is this node's change history: it serves GET /v1/watch and the long-polls
	// (index=&wait=) of reads. Without it, /v1/watch is 404 and wait= answers at once.
	Watch *watch.Hub
	// Stop, when closed, ends every watch stream and long-poll (with shutting_down): a graceful
	// shutdown waits for in-flight requests, and a stream would otherwise never finish.
	Stop <-chan struct{}
	// MaxWatches bounds the streams this node serves at once (503 too_many_watches past it).
	MaxWatches int
	// WatchProgressInterval: a stream sends a progress event at least this often.
	WatchProgressInterval time.Duration
	// WatchBufferBytes bounds what one stream holds for a client that does not read: past it the stream
	// ends with lagging. WatchLagTimeout cuts a client that takes no bytes for that long.
	WatchBufferBytes int
	WatchLagTimeout  time.Duration
	// NoLeaderTimeout: a stream on a node without a leader this long ends with no_leader.
	NoLeaderTimeout time.Duration
	// MaxTxnOps bounds a transaction's compares and ops together; MaxTxnBytes its body (413 past it).
	MaxTxnOps   int
	MaxTxnBytes int
}

// RequestObserver counts requests (metrics.Node implements it). route is a fixed pattern such as
// "/v1/kv/{key}", never the raw path, so that it cannot grow without bound.
type RequestObserver interface {
	ObserveRequest(route, method string, code int, took time.Duration)
}

// Validate reports options New would have to correct: negative sizes, or a default list limit above the
// maximum. Zero fields are valid and mean the default.
func (o Options) Validate() error {
	var errs []error
	if o.MaxValueSize < 0 {
		errs = append(errs, fmt.Errorf("max value size %d is negative", o.MaxValueSize))
	}
	if o.MaxKeySize < 0 {
		errs = append(errs, fmt.Errorf("max key size %d is negative", o.MaxKeySize))
	}
	if o.DefaultListLimit < 0 {
		errs = append(errs, fmt.Errorf("default list limit %d is negative", o.DefaultListLimit))
	}
	if o.MaxListLimit < 0 {
		errs = append(errs, fmt.Errorf("max list limit %d is negative", o.MaxListLimit))
	}
	// An explicit default above the (possibly defaulted) maximum is a mistake; a zero default with a
	// small maximum just means "the maximum".
	if maxLimit := o.withDefaults().MaxListLimit; o.DefaultListLimit > maxLimit {
		errs = append(errs, fmt.Errorf("default list limit %d is over the max list limit %d",
			o.DefaultListLimit, maxLimit))
	}
	return errors.Join(errs...)
}

// withDefaults fills zero (and, defensively, negative) fields and clamps the default list limit to the
// maximum, so New always has a usable configuration even if the caller skipped Validate.
func (o Options) withDefaults() Options {
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxKeySize <= 0 {
		o.MaxKeySize = DefaultMaxKeySize
	}
	if o.MaxListLimit <= 0 {
		o.MaxListLimit = DefaultMaxListLimit
	}
	if o.DefaultListLimit <= 0 {
		o.DefaultListLimit = DefaultDefaultListLimit
	}
	o.DefaultListLimit = min(o.DefaultListLimit, o.MaxListLimit)
	if o.MaxWatches <= 0 {
		o.MaxWatches = DefaultMaxWatches
	}
	if o.WatchProgressInterval <= 0 {
		o.WatchProgressInterval = DefaultWatchProgressInterval
	}
	if o.WatchBufferBytes <= 0 {
		o.WatchBufferBytes = DefaultWatchBufferBytes
	}
	if o.WatchLagTimeout <= 0 {
		o.WatchLagTimeout = DefaultWatchLagTimeout
	}
	if o.NoLeaderTimeout <= 0 {
		o.NoLeaderTimeout = DefaultNoLeaderTimeout
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.MaxTxnBytes <= 0 {
		o.MaxTxnBytes = DefaultMaxTxnBytes
	}
	return o
}
