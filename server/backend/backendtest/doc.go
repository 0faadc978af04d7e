// Package backendtest is the conformance suite of backend.Backend: one set
// of tests that every implementation runs, the host backend in every test
// run and the cuda backend on a GPU machine (build tag cuda), so that the
// layers above can rely on the same behaviour from both.
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend {
//			b, err := host.New(host.Config{Devices: 2, Memory: 256 << 20})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		})
//	}
//
// The suite checks allocation (window, alignment, quota), frees, byte-exact
// copies and memsets, rejection of bad ranges and handles, stream order,
// cross-stream and cross-device order through events, the legacy default
// stream's implicit synchronization, event timing, queries, cancellation of
// waits, closing, and concurrent use. Its subtests run one after another;
// each gets a Backend of its own and closes it.
package backendtest
