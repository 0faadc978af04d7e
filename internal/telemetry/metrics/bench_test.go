package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xgpu/xgpu/internal/calls"
)

func BenchmarkCallCounter(b *testing.B) {
	m := New()
	b.Run("atomic-by-opcode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Call(calls.OpMemcpyHtoD)
		}
	})
	b.Run("atomic-by-opcode-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Call(calls.OpMemcpyHtoD)
			}
		})
	})
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Bytes(HostToDevice, 4096)
		}
	})
	// The label lookup per call that the opcode-indexed counters avoid.
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"api"})
	b.Run("countervec-label-lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			vec.WithLabelValues(calls.Name(calls.OpMemcpyHtoD)).Inc()
		}
	})
}
