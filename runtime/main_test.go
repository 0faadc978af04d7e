package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/server/worker"
)

// workerEnv makes the test binary act as `xgpu worker`, so that tests can
// run and kill real worker processes (server.ExecLauncher).
const workerEnv = "XGPU_RUNTIME_TEST_WORKER"

func TestMain(m *testing.M) {
	// quic-go warns once when it cannot get the UDP buffers it wants.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	if os.Getenv(workerEnv) == "1" {
		if err := worker.Main(context.Background(), os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// In-process workers log through the default logger.
	slog.SetDefault(quietLogger())
	goleak.VerifyTestMain(m)
}

// quietLogger logs warnings and errors only.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
