package metrics

import (
	armon "github.com/armon/go-metrics"
	gometrics "github.com/hashicorp/go-metrics"
)

func emitHashicorp(key []string, v float32) { gometrics.IncrCounter(key, v) }
func emitArmon(key []string, v float32)     { armon.AddSample(key, v) }
