package transport_test

import (
	"testing"

	"github.com/signald-dev/signald/transport"
	"github.com/signald-dev/signald/transport/transporttest"
)

// TestConformance runs the one suite every backend must pass. The Redis
// backends skip unless SIGNALD_INTEGRATION is set.
func TestConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		transporttest.Run(t, func(t *testing.T) transport.Backend {
			m := transport.NewMemory()
			t.Cleanup(func() { m.Close() })
			return m
		})
	})
	t.Run("redis", func(t *testing.T) {
		transporttest.Run(t, func(t *testing.T) transport.Backend {
			return transport.NewIntegrationRedis(t, transport.RedisOptions{})
		})
	})
	t.Run("redis-pipeline", func(t *testing.T) {
		transporttest.Run(t, func(t *testing.T) transport.Backend {
			return transport.NewIntegrationRedis(t, transport.RedisOptions{PipelineAppend: true})
		})
	})
	t.Run("redis-cluster", func(t *testing.T) { transporttest.Run(t, transport.NewIntegrationRedisCluster) })
}
