package httpapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestOptionsDefaults(t *testing.T) {
	assert.Equal(t, Options{
		MaxValueSize: 1 << 20, MaxKeySize: 1024, DefaultListLimit: 1000, MaxListLimit: 10000,
		MaxWatches: 10000, WatchProgressInterval: 10 * time.Second, WatchBufferBytes: 1 << 20,
		WatchLagTimeout: 30 * time.Second, NoLeaderTimeout: 5 * time.Second, MaxTxnOps: 128, MaxTxnBytes: 2 << 20,
	}, Options{}.withDefaults())

	// A small maximum pulls the (unset) default down with it.
	assert.Equal(t, 50, Options{MaxListLimit: 50}.withDefaults().DefaultListLimit)
	assert.Equal(t, 50, Options{MaxListLimit: 50, DefaultListLimit: 80}.withDefaults().DefaultListLimit)
}

func TestOptionsValidate(t *testing.T) {
	assert.NoError(t, Options{}.Validate())
	assert.NoError(t, Options{MaxListLimit: 50}.Validate())
	assert.NoError(t, Options{MaxValueSize: 10, MaxKeySize: 10, DefaultListLimit: 10, MaxListLimit: 10}.Validate())

	for _, o := range []Options{
		{MaxValueSize: -1}, {MaxKeySize: -1}, {DefaultListLimit: -1}, {MaxListLimit: -1},
		{MaxListLimit: 50, DefaultListLimit: 80},
		{DefaultListLimit: 20000},
	} {
		assert.Error(t, o.Validate(), "%+v", o)
	}
}
