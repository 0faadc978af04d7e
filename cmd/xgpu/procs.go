package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process that xgpu started and must stop.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status; valid after done is closed
}

// startChild runs this binary again with args. The child writes the address
// it listens on into a file (--addr-file), which startChild waits for, so no
// port is picked ahead of time and none can be raced for. The child dies
// with its parent (Pdeathsig), so an interrupted demo leaves nothing behind.
func startChild(ctx context.Context, name, dir string, logw io.Writer, args ...string) (*child, string, error) {
	return startChildEnv(ctx, name, dir, logw, nil, args...)
}

// startChildEnv is startChild with env added to the child's environment.
func startChildEnv(ctx context.Context, name, dir string, logw io.Writer, env []string, args ...string) (*child, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("find own executable: %w", err)
	}
	addrFile := filepath.Join(dir, name+".addr")
	_ = os.Remove(addrFile)
	cmd := exec.Command(exe, append(args, "--addr-file", addrFile)...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logw
	cmd.Stderr = logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	addr, err := waitAddrFile(ctx, addrFile, c.done, 30*time.Second)
	if err != nil {
		c.stop(2 * time.Second)
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	return c, addr, nil
}

// waitAddrFile polls for the address file until it holds an address, the
// child exits, or the timeout passes.
func waitAddrFile(ctx context.Context, path string, exited <-chan struct{}, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case <-ctx.Done():
			return "", context.Cause(ctx)
		case <-exited:
			return "", errors.New("exited before it was ready (see its log)")
		case <-deadline.C:
			return "", fmt.Errorf("not ready after %v", timeout)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, waits up to grace, then kills.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %v; killed", c.name, grace)
	}
}

// stopAll stops children in parallel and returns the first error.
func stopAll(children []*child, grace time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(children))
	for i, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.stop(grace)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeAddrFile writes addr atomically, so a reader never sees half of it.
func writeAddrFile(path, addr string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	return os.Rename(tmp, path)
}

// service is what `xgpu server` and `xgpu aggregator` run: Serve until
// Shutdown or Close, then ErrServerClosed.
type service interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// shutdownGrace bounds a graceful shutdown after SIGINT or SIGTERM.
const shutdownGrace = 10 * time.Second

// serveUntilDone serves svc on lis, calls ready once it is serving, and
// returns when Serve fails or ctx ends, after a graceful shutdown of at
// most shutdownGrace. closed is svc's ErrServerClosed, which is no error.
func serveUntilDone(ctx context.Context, svc service, lis net.Listener, closed error, log *slog.Logger, ready func() error) error {
	errc := make(chan error, 1) // buffered: Serve's result is read at most once
	go func() { errc <- svc.Serve(lis) }()
	if err := ready(); err != nil {
		svc.Close()
		return err
	}
	select {
	case err := <-errc:
		svc.Close()
		if errors.Is(err, closed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := svc.Shutdown(sctx); err != nil {
		svc.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, closed) {
		return err
	}
	return nil
}
