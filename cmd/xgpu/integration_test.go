package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xgpu/xgpu/aggregator"
)

// xgpuBin is the xgpu binary built once for the process-level tests.
var xgpuBin string

func TestMain(m *testing.M) {
	// On a GPU machine, which has no Go toolchain, the binary comes prebuilt.
	if bin := os.Getenv("XGPU_BIN"); bin != "" {
		xgpuBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "xgpu-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xgpuBin = filepath.Join(dir, "xgpu")
	build := exec.Command("go", "build", "-o", xgpuBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build xgpu:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a process of the test cluster.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

func startProc(t *testing.T, name string, args ...string) (*proc, string) {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), name+".addr")
	cmd := exec.Command(xgpuBin, append(args, "--addr-file", addrFile, "--log-level", "warn")...)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	addr, err := waitAddrFile(context.Background(), addrFile, p.done, 60*time.Second)
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, log.String())
	}
	return p, addr
}

func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// freePort returns a loopback address nobody listens on right now, so that
// a restarted aggregator can come back where its servers look for it.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// xgpuCLI runs a client command and returns stdout, stderr and the exit code.
func xgpuCLI(t *testing.T, agg string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(xgpuBin, args...)
	cmd.Env = append(os.Environ(), "XGPU_AGGREGATOR="+agg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run xgpu %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v (last: %s)", what, timeout, last)
}

// TestPoolLifecycle runs a real aggregator with embedded etcd and 16 real
// server processes on loopback: lease all 64 devices, kill a server and see
// its devices leave the pool and the lease report them lost, restart the
// aggregator and find the lease intact, and let a lease expire.
func TestPoolLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 17 processes")
	}
	const hosts, gpus = 16, 4
	dataDir := t.TempDir()
	aggAddr := freePort(t)
	aggArgs := []string{"aggregator", "--listen", aggAddr, "--data-dir", dataDir,
		"--heartbeat-interval", "250ms", "--heartbeat-timeout", "1500ms"}
	agg, _ := startProc(t, "aggregator", aggArgs...)

	servers := make([]*proc, hosts)
	for h := range hosts {
		name := fmt.Sprintf("host%02d", h)
		servers[h], _ = startProc(t, name, "server", "--backend", "host", "--host", name, "--id", name,
			"--listen", "127.0.0.1:0", "--aggregator", aggAddr, "--devices", fmt.Sprint(gpus), "--memory", "1GiB", "--nvlinks", "18")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := aggregator.Dial(ctx, aggAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := waitPool(ctx, c, hosts*gpus, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// Lease every device, through the CLI.
	out, errOut, code := xgpuCLI(t, aggAddr, "alloc", "-n", "64", "--ttl", "10m", "--json")
	if code != 0 {
		t.Fatalf("alloc -n 64: exit %d: %s", code, errOut)
	}
	var doc leaseDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("alloc --json: %v\n%s", err, out)
	}
	m := doc.DeviceMap
	if m.Len() != hosts*gpus || doc.State != "active" {
		t.Fatalf("lease has %d devices, state %s", m.Len(), doc.State)
	}
	groups := m.HostGroups()
	if len(groups) != hosts {
		t.Fatalf("lease spans %d host groups, want %d", len(groups), hosts)
	}
	for _, g := range groups {
		for k := 1; k < len(g); k++ {
			if g[k] != g[k-1]+1 {
				t.Fatalf("devices of one host are not contiguous: %v", g)
			}
		}
	}

	// The pool is empty now: one more device is refused with a clear error.
	_, errOut, code = xgpuCLI(t, aggAddr, "alloc", "-n", "1")
	if code == 0 || !strings.Contains(errOut, "free") {
		t.Fatalf("alloc on a full pool: exit %d, stderr %q; want a failure that says how many are free", code, errOut)
	}

	// topo over the lease: NV18 inside a host, NET across.
	out, errOut, code = xgpuCLI(t, aggAddr, "topo", "--lease", doc.ID)
	if code != 0 || !strings.Contains(out, "NV18") || !strings.Contains(out, "NET") {
		t.Fatalf("topo: exit %d, %s\n%s", code, errOut, out)
	}

	// Kill host05 hard: its devices leave the pool, the lease turns degraded.
	victim := 5
	var lostWant []int
	for i, d := range m.Devices {
		if d.Host == "host05" {
			lostWant = append(lostWant, i)
		}
	}
	servers[victim].kill(syscall.SIGKILL)
	eventually(t, 15*time.Second, "lease degraded after host05 died", func() (bool, string) {
		l, err := c.Get(ctx, doc.ID)
		if err != nil {
			return false, err.Error()
		}
		return l.State == aggregator.LeaseDegraded && fmt.Sprint(l.Lost) == fmt.Sprint(lostWant),
			fmt.Sprintf("state %v lost %v", l.State, l.Lost)
	})
	pool, err := c.Pool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range pool.Servers {
		if s.Inventory.GetServerId() == "host05" && s.Alive {
			t.Fatal("host05 still alive in the pool")
		}
	}
	if pool.Map.Len() != (hosts-1)*gpus {
		t.Fatalf("pool map has %d devices after losing a host, want %d", pool.Map.Len(), (hosts-1)*gpus)
	}

	// Restart the aggregator on the same address: the lease is intact.
	agg.kill(syscall.SIGTERM)
	c.Close()
	startProc(t, "aggregator2", aggArgs...)
	c, err = aggregator.Dial(ctx, aggAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.Get(ctx, doc.ID)
	if err != nil {
		t.Fatalf("lease lost across an aggregator restart: %v", err)
	}
	if l.Map.Len() != hosts*gpus || l.State != aggregator.LeaseDegraded || fmt.Sprint(l.Lost) != fmt.Sprint(lostWant) {
		t.Fatalf("after restart: %d devices, state %v, lost %v", l.Map.Len(), l.State, l.Lost)
	}
	// The 15 live servers keep heartbeating to the new aggregator.
	eventually(t, 15*time.Second, "servers alive after the aggregator restart", func() (bool, string) {
		pool, err := c.Pool(ctx)
		if err != nil {
			return false, err.Error()
		}
		alive := 0
		for _, s := range pool.Servers {
			if s.Alive {
				alive++
			}
		}
		return alive == hosts-1, fmt.Sprintf("%d alive", alive)
	})
	// Past the grace period the live servers are still alive.
	time.Sleep(2 * time.Second)
	if pool, err = c.Pool(ctx); err != nil {
		t.Fatal(err)
	}
	alive := 0
	for _, s := range pool.Servers {
		if s.Alive {
			alive++
		}
	}
	if alive != hosts-1 {
		t.Fatalf("%d servers alive after the grace period, want %d", alive, hosts-1)
	}

	// Release, then let a short lease expire without renewing it.
	if _, errOut, code = xgpuCLI(t, aggAddr, "release", doc.ID); code != 0 {
		t.Fatalf("release: %s", errOut)
	}
	short, err := c.Allocate(ctx, aggregator.AllocateOptions{Count: 4, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "short lease expired", func() (bool, string) {
		_, err := c.Get(ctx, short.ID)
		return errors.Is(err, aggregator.ErrNotFound), fmt.Sprint(err)
	})
	if err := waitPool(ctx, c, (hosts-1)*gpus, 10*time.Second); err != nil {
		t.Fatalf("devices of the expired lease did not return: %v", err)
	}

	// ls --json reports 15 alive servers and 60 free vGPUs.
	out, errOut, code = xgpuCLI(t, aggAddr, "ls", "--json")
	if code != 0 {
		t.Fatalf("ls: %s", errOut)
	}
	var ls lsDoc
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatal(err)
	}
	if ls.Summary.AliveServers != hosts-1 || ls.Summary.Free != (hosts-1)*gpus || ls.Summary.Leased != 0 {
		t.Fatalf("ls summary %+v", ls.Summary)
	}
}

// TestCLIErrors checks that bad input gives a clear error and a non-zero exit.
func TestCLIErrors(t *testing.T) {
	dead := freePort(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unreachable aggregator", []string{"ls"}, "cannot reach the aggregator"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"malformed map file", []string{"topo", "--map", "testdata/bad-map.json"}, "devicemap"},
		{"missing map file", []string{"topo", "--map", "testdata/none.json"}, "no such file"},
		{"bad size", []string{"server", "--backend", "host", "--memory", "lots"}, "invalid size"},
		{"bad backend", []string{"server", "--backend", "tpu", "--listen", "127.0.0.1:0"}, "unknown backend"},
		{"bad placement", []string{"alloc", "--placement", "scatter"}, "placement"},
		{"release without id", []string{"release"}, "Usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := xgpuCLI(t, dead, tt.args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			if !strings.Contains(errOut, tt.want) {
				t.Fatalf("stderr %q does not mention %q", errOut, tt.want)
			}
		})
	}
}
