package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/server/worker"
)

// workerEnv makes the test binary act as `xgpu worker`, so that the
// servers of the tests run their workers as processes, as in production.
const workerEnv = "XGPU_BENCH_TEST_WORKER"

func TestMain(m *testing.M) {
	// quic-go warns once when it cannot get the UDP buffers it wants.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	if mode := os.Getenv(nativeEnv); mode != "" {
		os.Exit(fakeNativeMain(mode, os.Stdin, os.Stdout, os.Stderr))
	}
	if mode := os.Getenv(ncclEnv); mode != "" {
		os.Exit(fakeNCCLMain(mode, os.Args[1:], os.Stdin, os.Stdout))
	}
	if os.Getenv(workerEnv) == "1" {
		if err := worker.Main(context.Background(), os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
