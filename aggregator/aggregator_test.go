package aggregator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/clock"
	"github.com/xgpu/xgpu/internal/pb"
)

func mustRegister(t *testing.T, a *Aggregator, inv *pb.Inventory, instance string) {
	t.Helper()
	if err := a.register(ctxT(t), inv, instance); err != nil {
		t.Fatalf("register %s/%s: %v", inv.GetServerId(), instance, err)
	}
}

func mustAllocate(t *testing.T, a *Aggregator, r allocRequest) *leaseRecord {
	t.Helper()
	rec, err := a.allocate(ctxT(t), r)
	if err != nil {
		t.Fatalf("allocate %+v: %v", r, err)
	}
	return rec
}

// elapse advances clk by d in steps of the heartbeat interval, the servers
// named "id/instance" heartbeating at every step.
func elapse(t *testing.T, a *Aggregator, clk *clock.Fake, d time.Duration, servers ...string) {
	t.Helper()
	for d > 0 {
		step := min(d, a.cfg.HeartbeatInterval)
		clk.Advance(step)
		d -= step
		for _, s := range servers {
			id, instance, _ := strings.Cut(s, "/")
			if err := a.heartbeat(ctxT(t), id, instance); err != nil {
				t.Fatalf("heartbeat %s: %v", s, err)
			}
		}
	}
}

func mustSweep(t *testing.T, a *Aggregator) {
	t.Helper()
	if err := a.sweep(ctxT(t)); err != nil {
		t.Fatalf("sweep: %v", err)
	}
}

// leaseMap parses a lease's device map.
func leaseMap(t *testing.T, rec *leaseRecord) *devicemap.Map {
	t.Helper()
	m, err := devicemap.Parse(rec.DeviceMap)
	if err != nil {
		t.Fatalf("device map of %s: %v", rec.ID, err)
	}
	return m
}

// stored reads a lease from the store, bypassing expiry.
func stored(t *testing.T, s Store, id string) *leaseRecord {
	t.Helper()
	kv, err := s.Get(ctxT(t), leaseKey(id))
	if err != nil {
		t.Fatal(err)
	}
	if kv.ModRevision == 0 {
		return nil
	}
	rec, err := decodeLease(kv.Value)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func claimsOf(t *testing.T, s Store) map[string]string {
	t.Helper()
	kvs, err := s.List(ctxT(t), claimsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, kv := range kvs {
		out[strings.TrimPrefix(kv.Key, claimsPrefix)] = string(kv.Value)
	}
	return out
}

func TestRegisterLifecycle(t *testing.T) {
	tests := []struct {
		name string
		// run registers s1 (instance "i1") first, then does its steps.
		run func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory)
	}{
		{"same instance again is idempotent", func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory) {
			before := dump(t, s)
			clk.Advance(time.Second)
			mustRegister(t, a, proto.Clone(inv).(*pb.Inventory), "i1")
			assertUnchanged(t, s, before)
		}},
		{"another instance while the first is alive", func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory) {
			before := dump(t, s)
			err := a.register(ctxT(t), inv, "i2")
			if !errors.Is(err, ErrAlreadyRegistered) {
				t.Fatalf("register = %v, want ErrAlreadyRegistered", err)
			}
			for _, want := range []string{`"s1"`, `"i1"`, `"i2"`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			assertUnchanged(t, s, before)
		}},
		{"another instance once the first timed out", func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory) {
			clk.Advance(a.cfg.HeartbeatTimeout - time.Millisecond)
			if err := a.register(ctxT(t), inv, "i2"); !errors.Is(err, ErrAlreadyRegistered) {
				t.Fatalf("register just before the timeout = %v, want ErrAlreadyRegistered", err)
			}
			clk.Advance(time.Millisecond)
			mustRegister(t, a, inv, "i2")
			if err := a.heartbeat(ctxT(t), "s1", "i1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("heartbeat of the old instance = %v, want ErrNotFound", err)
			}
			if err := a.heartbeat(ctxT(t), "s1", "i2"); err != nil {
				t.Errorf("heartbeat of the new instance = %v", err)
			}
		}},
		{"another instance after deregistration", func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory) {
			if err := a.deregister(ctxT(t), "s1", "i1"); err != nil {
				t.Fatal(err)
			}
			if err := a.deregister(ctxT(t), "s1", "i1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("second deregister = %v, want ErrNotFound", err)
			}
			mustRegister(t, a, inv, "i2")
		}},
		{"deregister by another instance is refused", func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory) {
			before := dump(t, s)
			if err := a.deregister(ctxT(t), "s1", "i9"); !errors.Is(err, ErrNotFound) {
				t.Errorf("deregister = %v, want ErrNotFound", err)
			}
			assertUnchanged(t, s, before)
		}},
		{"heartbeats keep a server alive", func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory) {
			for range 20 {
				clk.Advance(a.cfg.HeartbeatInterval)
				if err := a.heartbeat(ctxT(t), "s1", "i1"); err != nil {
					t.Fatalf("heartbeat: %v", err)
				}
			}
			mustSweep(t, a)
			p, _ := a.pool(ctxT(t))
			if !p.Servers[0].Alive {
				t.Error("server dead despite heartbeats")
			}
		}},
		{"silence kills, and heartbeats then get NotFound", func(t *testing.T, a *Aggregator, s *MemoryStore, clk *clock.Fake, inv *pb.Inventory) {
			clk.Advance(a.cfg.HeartbeatTimeout)
			mustSweep(t, a)
			if err := a.heartbeat(ctxT(t), "s1", "i1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("heartbeat of a dead server = %v, want ErrNotFound", err)
			}
			p, _ := a.pool(ctxT(t))
			if m, err := devicemap.Parse(p.GetDeviceMap()); p.Servers[0].Alive || err != nil || m.Len() != 0 {
				t.Errorf("pool: alive %v, map %v (%v); want dead and an empty map", p.Servers[0].Alive, m, err)
			}
			mustRegister(t, a, inv, "i1") // the same process registers again
			if err := a.heartbeat(ctxT(t), "s1", "i1"); err != nil {
				t.Errorf("heartbeat after registering again: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemoryStore()
			clk := clock.NewFake(time.Time{})
			a := newTestAggregator(t, s, clk)
			inv := testInventory("s1", "h1", gpuSpec{gpus: 2})
			mustRegister(t, a, inv, "i1")
			tt.run(t, a, s, clk, inv)
		})
	}
}

func TestHeartbeatErrors(t *testing.T) {
	s := NewMemoryStore()
	a := newTestAggregator(t, s, clock.NewFake(time.Time{}))
	mustRegister(t, a, testInventory("s1", "h1", gpuSpec{gpus: 1}), "i1")
	tests := []struct {
		name, server, instance string
		want                   error
	}{
		{"unknown server", "s9", "i1", ErrNotFound},
		{"unknown instance", "s1", "i2", ErrNotFound},
		{"empty server id", "", "i1", ErrInvalid},
		{"empty instance", "s1", "", ErrInvalid},
		{"control character", "s\n1", "i1", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dump(t, s)
			if err := a.heartbeat(ctxT(t), tt.server, tt.instance); !errors.Is(err, tt.want) {
				t.Errorf("heartbeat(%q, %q) = %v, want %v", tt.server, tt.instance, err, tt.want)
			}
			assertUnchanged(t, s, before)
		})
	}
}

func TestRegisterBadInventory(t *testing.T) {
	good := func() *pb.Inventory {
		return testInventory("s2", "h2", gpuSpec{gpus: 2, slots: 2, islands: [][]int{{0, 1}}})
	}
	tests := []struct {
		name     string
		mutate   func(inv *pb.Inventory) *pb.Inventory
		instance string
		want     string
	}{
		{"nil", func(*pb.Inventory) *pb.Inventory { return nil }, "i", "inventory missing"},
		{"empty instance", func(inv *pb.Inventory) *pb.Inventory { return inv }, "", "instance missing"},
		{"empty server id", func(inv *pb.Inventory) *pb.Inventory { inv.ServerId = ""; return inv }, "i", "server_id missing"},
		{"space in server id", func(inv *pb.Inventory) *pb.Inventory { inv.ServerId = "s 2"; return inv }, "i", "space"},
		{"empty host", func(inv *pb.Inventory) *pb.Inventory { inv.Host = ""; return inv }, "i", "host missing"},
		{"address without port", func(inv *pb.Inventory) *pb.Inventory { inv.Address = "h2"; return inv }, "i", "not host:port"},
		{"empty GPU uuid", func(inv *pb.Inventory) *pb.Inventory { inv.Gpus[1].Uuid = ""; return inv }, "i", "gpus[1].uuid missing"},
		{"duplicate GPU", func(inv *pb.Inventory) *pb.Inventory {
			inv.Gpus[1].Uuid = inv.Gpus[0].Uuid
			return inv
		}, "i", "listed twice"},
		{"duplicate GPU index", func(inv *pb.Inventory) *pb.Inventory { inv.Gpus[1].Index = 0; return inv }, "i", "both have index 0"},
		{"GPU with zero memory", func(inv *pb.Inventory) *pb.Inventory { inv.Gpus[0].MemoryBytes = 0; return inv }, "i", "zero memory"},
		{"empty vGPU id", func(inv *pb.Inventory) *pb.Inventory { inv.Vgpus[3].Id = ""; return inv }, "i", "vgpus[3].id missing"},
		{"duplicate vGPU", func(inv *pb.Inventory) *pb.Inventory {
			inv.Vgpus[1].Id = inv.Vgpus[0].Id
			return inv
		}, "i", `vGPU "GPU-s2-0/0" listed twice`},
		{"vGPU of an unknown GPU", func(inv *pb.Inventory) *pb.Inventory { inv.Vgpus[0].GpuUuid = "GPU-nowhere"; return inv }, "i", `unknown GPU "GPU-nowhere"`},
		{"vGPU with the wrong GPU index", func(inv *pb.Inventory) *pb.Inventory { inv.Vgpus[0].GpuIndex = 1; return inv }, "i", "gpu_index 1"},
		{"vGPU with zero memory", func(inv *pb.Inventory) *pb.Inventory { inv.Vgpus[2].MemoryBytes = 0; return inv }, "i", "zero memory"},
		{"vGPU larger than its GPU", func(inv *pb.Inventory) *pb.Inventory { inv.Vgpus[0].MemoryBytes = 81 * gib; return inv }, "i", "more than its GPU"},
		{"vGPU without compute", func(inv *pb.Inventory) *pb.Inventory { inv.Vgpus[0].ComputeShare = 0; return inv }, "i", "compute_share 0"},
		{"vGPU id not <gpu>/<slot>", func(inv *pb.Inventory) *pb.Inventory { inv.Vgpus[0].Id = "GPU-s2-0/7"; return inv }, "i", "vgpu"},
		{"GPU uuid without GPU- prefix", func(inv *pb.Inventory) *pb.Inventory {
			inv.Gpus[0].Uuid = "card0"
			inv.Vgpus[0].GpuUuid, inv.Vgpus[0].Id = "card0", "card0/0"
			inv.Vgpus[1].GpuUuid, inv.Vgpus[1].Id = "card0", "card0/1"
			return inv
		}, "i", "gpuUuid"},
		{"unknown link kind", func(inv *pb.Inventory) *pb.Inventory { inv.Gpus[0].Peers[0].Kind = "WIRE"; return inv }, "i", "kind"},
		{"GPU offered by another server", func(inv *pb.Inventory) *pb.Inventory {
			other := testInventory("s1", "h1", gpuSpec{gpus: 1})
			other.ServerId, other.Address = "s2", "h2:1"
			return other
		}, "i", `GPU "GPU-s1-0" is already offered by server "s1"`},
		{"address of another server", func(inv *pb.Inventory) *pb.Inventory {
			inv.Address = testInventory("s1", "h1", gpuSpec{}).Address
			return inv
		}, "i", "is already used by server \"s1\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemoryStore()
			a := newTestAggregator(t, s, clock.NewFake(time.Time{}))
			mustRegister(t, a, testInventory("s1", "h1", gpuSpec{gpus: 1}), "i1")
			before := dump(t, s)
			err := a.register(ctxT(t), tt.mutate(good()), tt.instance)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("register = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
			assertUnchanged(t, s, before)
		})
	}
}

// twoHosts registers s1 on host h1 and s2 on host h2, each with gpus GPUs
// of one NVLink island.
func twoHosts(t *testing.T, a *Aggregator, gpus int) {
	t.Helper()
	all := make([]int, gpus)
	for i := range all {
		all[i] = i
	}
	mustRegister(t, a, testInventory("s1", "h1", gpuSpec{gpus: gpus, islands: [][]int{all}}), "i1")
	mustRegister(t, a, testInventory("s2", "h2", gpuSpec{gpus: gpus, islands: [][]int{all}}), "i2")
}

func TestAllocate(t *testing.T) {
	s := NewMemoryStore()
	clk := clock.NewFake(time.Time{})
	a := newTestAggregator(t, s, clk)
	twoHosts(t, a, 4)

	rec := mustAllocate(t, a, allocRequest{count: 3, owner: "alice@laptop"})
	m := leaseMap(t, rec)
	if m.LeaseID != rec.ID || m.Len() != 3 {
		t.Fatalf("map: lease %q, %d devices; want %q, 3", m.LeaseID, m.Len(), rec.ID)
	}
	hosts := map[string]bool{}
	for i, d := range m.Devices {
		hosts[d.Host] = true
		if rec.Devices[i].VGPU != d.VGPU {
			t.Errorf("record device %d is %s, map says %s", i, rec.Devices[i].VGPU, d.VGPU)
		}
	}
	if len(hosts) != 1 {
		t.Errorf("pack placed 3 devices on %d hosts", len(hosts))
	}
	if rec.TTL != DefaultLeaseTTL || !rec.Expires.Equal(clk.Now().Add(DefaultLeaseTTL)) || rec.Owner != "alice@laptop" {
		t.Errorf("lease ttl %v expires %v owner %q", rec.TTL, rec.Expires, rec.Owner)
	}
	if c := claimsOf(t, s); len(c) != 3 {
		t.Errorf("%d claims, want 3", len(c))
	}

	// The rest of the pool: 5 free; a spread lease of 5 takes them all.
	spread := mustAllocate(t, a, allocRequest{count: 5, placement: PlacementSpread, ttl: time.Minute})
	if leaseMap(t, spread).Len() != 5 || spread.TTL != time.Minute {
		t.Errorf("spread lease: %d devices, ttl %v", len(spread.Devices), spread.TTL)
	}
	claims := claimsOf(t, s)
	if len(claims) != 8 {
		t.Errorf("%d claims, want 8", len(claims))
	}

	before := dump(t, s)
	_, err := a.allocate(ctxT(t), allocRequest{count: 1})
	var ie *InsufficientError
	if !errors.As(err, &ie) || ie.Free != 0 || ie.Asked != 1 || !errors.Is(err, ErrExhausted) {
		t.Errorf("allocate from a full pool = %v, want InsufficientError{0 free, 1 asked}", err)
	}
	assertUnchanged(t, s, before)
}

func TestAllocateInvalid(t *testing.T) {
	tests := []struct {
		name string
		r    allocRequest
		want error
		msg  string
	}{
		{"zero count", allocRequest{count: 0}, ErrInvalid, "count 0"},
		{"negative count", allocRequest{count: -2}, ErrInvalid, "count -2"},
		{"huge count", allocRequest{count: MaxLeaseDevices + 1}, ErrInvalid, "at most"},
		{"negative ttl", allocRequest{count: 1, ttl: -time.Second}, ErrInvalid, "negative"},
		{"ttl below the minimum", allocRequest{count: 1, ttl: time.Millisecond}, ErrInvalid, "below the minimum"},
		{"ttl above the maximum", allocRequest{count: 1, ttl: 25 * time.Hour}, ErrInvalid, "exceeds the maximum"},
		{"unknown placement", allocRequest{count: 1, placement: 9}, ErrInvalid, "placement"},
		{"long owner", allocRequest{count: 1, owner: strings.Repeat("x", 300)}, ErrInvalid, "owner"},
		{"more than the pool", allocRequest{count: 5}, ErrExhausted, "4 free, 5 asked"},
		{"more memory than any vGPU", allocRequest{count: 1, memory: 81 * gib}, ErrExhausted, "0 free with at least"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemoryStore()
			a := newTestAggregator(t, s, clock.NewFake(time.Time{}))
			twoHosts(t, a, 2)
			before := dump(t, s)
			_, err := a.allocate(ctxT(t), tt.r)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("allocate = %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
			assertUnchanged(t, s, before)
		})
	}
}

func TestAllocateMemoryFilter(t *testing.T) {
	s := NewMemoryStore()
	a := newTestAggregator(t, s, clock.NewFake(time.Time{}))
	mustRegister(t, a, testInventory("s1", "h1", gpuSpec{gpus: 2, slots: 2}), "i1") // 40 GiB vGPUs
	mustRegister(t, a, testInventory("s2", "h2", gpuSpec{gpus: 2}), "i2")           // 80 GiB vGPUs
	rec := mustAllocate(t, a, allocRequest{count: 2, memory: 60 * gib})
	for _, d := range rec.Devices {
		if d.Server != "s2" {
			t.Errorf("device %s of server %s has less than 60 GiB", d.VGPU, d.Server)
		}
	}
	if _, err := a.allocate(ctxT(t), allocRequest{count: 1, memory: 60 * gib}); !errors.Is(err, ErrExhausted) {
		t.Errorf("allocate = %v, want ErrExhausted", err)
	}
	mustAllocate(t, a, allocRequest{count: 4, memory: 40 * gib})
}

func TestRenewReleaseExpire(t *testing.T) {
	s := NewMemoryStore()
	clk := clock.NewFake(time.Time{})
	a := newTestAggregator(t, s, clk)
	twoHosts(t, a, 1)
	ttl := 10 * time.Second

	rec := mustAllocate(t, a, allocRequest{count: 2, ttl: ttl})
	elapse(t, a, clk, 9*time.Second, "s1/i1", "s2/i2")
	renewed, err := a.renew(ctxT(t), rec.ID)
	if err != nil || !renewed.Expires.Equal(clk.Now().Add(ttl)) {
		t.Fatalf("renew = %+v, %v; want expiry now+ttl", renewed, err)
	}
	elapse(t, a, clk, 9*time.Second, "s1/i1", "s2/i2") // 18 s after creation, 9 s after the renewal
	if got, err := a.lease(ctxT(t), rec.ID); err != nil || got.ID != rec.ID || got.State != stateActive {
		t.Fatalf("lease after renewal = %+v, %v", got, err)
	}

	// Expiry: hidden at once, deleted by the sweep (which the clock's step
	// may have run already: then the lease is simply gone), its vGPUs free.
	elapse(t, a, clk, time.Second, "s1/i1", "s2/i2")
	for _, op := range []struct {
		name string
		err  error
	}{
		{"get", func() error { _, err := a.lease(ctxT(t), rec.ID); return err }()},
		{"renew", func() error { _, err := a.renew(ctxT(t), rec.ID); return err }()},
		{"release", a.release(ctxT(t), rec.ID)},
	} {
		if !errors.Is(op.err, ErrNotFound) || !strings.Contains(op.err.Error(), "expired") && !strings.Contains(op.err.Error(), "no lease") {
			t.Errorf("%s of an expired lease = %v, want ErrNotFound saying expired (or, once swept, no lease)", op.name, op.err)
		}
	}
	if ls, _ := a.leases(ctxT(t)); len(ls) != 0 {
		t.Errorf("list shows %d expired leases", len(ls))
	}
	mustSweep(t, a)
	if stored(t, s, rec.ID) != nil || len(claimsOf(t, s)) != 0 {
		t.Errorf("expired lease or its claims still stored: %v", claimsOf(t, s))
	}

	// Release.
	rec = mustAllocate(t, a, allocRequest{count: 2})
	if ls, _ := a.leases(ctxT(t)); len(ls) != 1 || ls[0].ID != rec.ID {
		t.Errorf("list = %v, want the one lease", ls)
	}
	if err := a.release(ctxT(t), rec.ID); err != nil {
		t.Fatalf("release: %v", err)
	}
	if len(claimsOf(t, s)) != 0 {
		t.Error("release left claims")
	}
	before := dump(t, s)
	for _, op := range []struct {
		name string
		err  error
	}{
		{"get", func() error { _, err := a.lease(ctxT(t), rec.ID); return err }()},
		{"renew", func() error { _, err := a.renew(ctxT(t), rec.ID); return err }()},
		{"release", a.release(ctxT(t), rec.ID)},
		{"get of a malformed id", func() error { _, err := a.lease(ctxT(t), "no such\x00id"); return err }()},
	} {
		if !errors.Is(op.err, ErrNotFound) && !errors.Is(op.err, ErrInvalid) {
			t.Errorf("%s of a released lease = %v, want ErrNotFound", op.name, op.err)
		}
	}
	assertUnchanged(t, s, before)
	mustAllocate(t, a, allocRequest{count: 2})
}

// TestSweepLoopExpires runs the sweep loop in virtual time.
func TestSweepLoopExpires(t *testing.T) {
	s := NewMemoryStore()
	clk := clock.NewFake(time.Time{})
	a := newTestAggregator(t, s, clk)
	twoHosts(t, a, 1)
	rec := mustAllocate(t, a, allocRequest{count: 2, ttl: 3 * time.Second})
	for range 3 {
		if err := clk.BlockUntilWaiters(ctxT(t), 1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(a.cfg.HeartbeatInterval) // the loop sweeps and re-arms
	}
	if err := clk.BlockUntilWaiters(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	if stored(t, s, rec.ID) != nil || len(claimsOf(t, s)) != 0 {
		t.Error("the sweep loop did not delete the expired lease")
	}
}

func TestServerDeathDegradesLeases(t *testing.T) {
	s := NewMemoryStore()
	clk := clock.NewFake(time.Time{})
	a := newTestAggregator(t, s, clk)
	twoHosts(t, a, 2)
	rec := mustAllocate(t, a, allocRequest{count: 4, placement: PlacementSpread, ttl: time.Hour})
	var want []int
	for i, d := range rec.Devices {
		if d.Server == "s2" {
			want = append(want, i)
		}
	}

	// s1 heartbeats, s2 is silent.
	for elapsed := time.Duration(0); elapsed < a.cfg.HeartbeatTimeout; elapsed += a.cfg.HeartbeatInterval {
		clk.Advance(a.cfg.HeartbeatInterval)
		if err := a.heartbeat(ctxT(t), "s1", "i1"); err != nil {
			t.Fatal(err)
		}
	}
	mustSweep(t, a)

	got := stored(t, s, rec.ID)
	if got.State != stateDegraded || !slices.Equal(got.Lost, want) {
		t.Fatalf("lease state %s lost %v, want degraded with %v", got.State, got.Lost, want)
	}
	pbl := leaseToPB(got)
	if pbl.GetState() != pb.Lease_DEGRADED || len(pbl.GetLostDevices()) != len(want) {
		t.Errorf("gRPC lease: %v %v", pbl.GetState(), pbl.GetLostDevices())
	}
	for vgpu := range claimsOf(t, s) {
		if strings.HasPrefix(vgpu, "GPU-s2-") {
			t.Errorf("claim on %s of the dead server kept", vgpu)
		}
	}
	if err := a.heartbeat(ctxT(t), "s2", "i2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("heartbeat of the dead server = %v, want ErrNotFound", err)
	}
	p, err := a.pool(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range p.GetServers() {
		if wantAlive := srv.GetInventory().GetServerId() == "s1"; srv.GetAlive() != wantAlive {
			t.Errorf("pool: %s alive = %v", srv.GetInventory().GetServerId(), srv.GetAlive())
		}
	}
	if pm, err := devicemap.Parse(p.GetDeviceMap()); err != nil || pm.Len() != 2 {
		t.Errorf("pool map: %v devices, %v; want the 2 live ones", pm, err)
	}
	// The dead server's vGPUs left the pool.
	if _, err := a.allocate(ctxT(t), allocRequest{count: 1}); !errors.Is(err, ErrExhausted) {
		t.Errorf("allocate = %v, want ErrExhausted", err)
	}
	// Sweeping again changes nothing.
	before := dump(t, s)
	mustSweep(t, a)
	assertUnchanged(t, s, before)

	// The server returns: its vGPUs rejoin the pool, free; the old lease
	// stays degraded.
	mustRegister(t, a, testInventory("s2", "h2", gpuSpec{gpus: 2, islands: [][]int{{0, 1}}}), "i3")
	again := mustAllocate(t, a, allocRequest{count: 2})
	for _, d := range again.Devices {
		if d.Server != "s2" {
			t.Errorf("new lease got %s of %s", d.VGPU, d.Server)
		}
	}
	if got := stored(t, s, rec.ID); got.State != stateDegraded || !slices.Equal(got.Lost, want) {
		t.Errorf("old lease now %s %v", got.State, got.Lost)
	}
}

func TestDeregisterAndReregisterDegrade(t *testing.T) {
	tests := []struct {
		name string
		lose func(t *testing.T, a *Aggregator)
	}{
		{"deregister", func(t *testing.T, a *Aggregator) {
			if err := a.deregister(ctxT(t), "s2", "i2"); err != nil {
				t.Fatal(err)
			}
		}},
		{"same instance, changed inventory", func(t *testing.T, a *Aggregator) {
			inv := testInventory("s2", "h2", gpuSpec{gpus: 2, islands: [][]int{{0, 1}}})
			inv.Version = "upgraded"
			mustRegister(t, a, inv, "i2")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemoryStore()
			a := newTestAggregator(t, s, clock.NewFake(time.Time{}))
			twoHosts(t, a, 2)
			rec := mustAllocate(t, a, allocRequest{count: 4})
			tt.lose(t, a)
			got := stored(t, s, rec.ID)
			var lost []int
			for i, d := range rec.Devices {
				if d.Server == "s2" {
					lost = append(lost, i)
				}
			}
			if got.State != stateDegraded || !slices.Equal(got.Lost, lost) {
				t.Errorf("lease %s lost %v, want degraded, lost %v", got.State, got.Lost, lost)
			}
		})
	}
}

func TestRestartKeepsLeases(t *testing.T) {
	s := NewMemoryStore()
	clk := clock.NewFake(time.Time{})
	a1, err := New(context.Background(), Config{Store: s, Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	twoHosts(t, a1, 2)
	rec := mustAllocate(t, a1, allocRequest{count: 3, ttl: time.Hour, owner: "job-7"})
	clk.Advance(4 * time.Second) // almost timed out when the aggregator stops
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	clk.Advance(time.Minute) // down for a minute

	a2 := newTestAggregator(t, s, clk)
	got, err := a2.lease(ctxT(t), rec.ID)
	if err != nil || got.Owner != "job-7" || len(got.Devices) != 3 {
		t.Fatalf("lease after restart = %+v, %v", got, err)
	}
	// Grace: both servers count as alive for one timeout after the restart.
	mustSweep(t, a2)
	p, _ := a2.pool(ctxT(t))
	for _, srv := range p.GetServers() {
		if !srv.GetAlive() {
			t.Errorf("%s dead right after the restart", srv.GetInventory().GetServerId())
		}
	}
	if stored(t, s, rec.ID).State != stateActive {
		t.Error("lease degraded by the restart")
	}
	// s1 heartbeats with its old instance; s2 stays silent and dies after
	// the grace.
	clk.Advance(a2.cfg.HeartbeatTimeout - time.Second)
	if err := a2.heartbeat(ctxT(t), "s1", "i1"); err != nil {
		t.Fatalf("heartbeat after restart: %v", err)
	}
	clk.Advance(time.Second)
	mustSweep(t, a2)
	p, _ = a2.pool(ctxT(t))
	alive := map[string]bool{}
	for _, srv := range p.GetServers() {
		alive[srv.GetInventory().GetServerId()] = srv.GetAlive()
	}
	if !alive["s1"] || alive["s2"] {
		t.Errorf("alive after the grace = %v, want s1 only", alive)
	}
	if got := stored(t, s, rec.ID); (got.State == stateDegraded) != slices.ContainsFunc(rec.Devices, func(d leaseDevice) bool { return d.Server == "s2" }) {
		t.Errorf("lease state %s, lost %v", got.State, got.Lost)
	}
}

// TestRestartKeepsDeadServersDead checks that the restart grace does not
// revive a server that died before the restart.
func TestRestartKeepsDeadServersDead(t *testing.T) {
	s := NewMemoryStore()
	clk := clock.NewFake(time.Time{})
	a1, err := New(context.Background(), Config{Store: s, Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	twoHosts(t, a1, 2)
	rec := mustAllocate(t, a1, allocRequest{count: 2, placement: PlacementSpread, ttl: time.Hour})
	elapse(t, a1, clk, a1.cfg.HeartbeatTimeout, "s1/i1")
	mustSweep(t, a1)
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}

	a2 := newTestAggregator(t, s, clk)
	before := dump(t, s)
	if _, err := a2.allocate(ctxT(t), allocRequest{count: 3}); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "1 free") {
		t.Errorf("allocate = %v, want ErrExhausted with only s1's free vGPU", err)
	}
	if err := a2.heartbeat(ctxT(t), "s2", "i2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("heartbeat of the dead server after the restart = %v, want ErrNotFound", err)
	}
	if err := a2.heartbeat(ctxT(t), "s1", "i1"); err != nil {
		t.Errorf("heartbeat of the live server after the restart = %v", err)
	}
	assertUnchanged(t, s, before)
	p, _ := a2.pool(ctxT(t))
	for _, srv := range p.GetServers() {
		if wantAlive := srv.GetInventory().GetServerId() == "s1"; srv.GetAlive() != wantAlive {
			t.Errorf("%s alive = %v after the restart", srv.GetInventory().GetServerId(), srv.GetAlive())
		}
	}
	if got := stored(t, s, rec.ID); got.State != stateDegraded || len(got.Lost) != 1 {
		t.Errorf("lease %s lost %v, want degraded with one device lost", got.State, got.Lost)
	}
	mustRegister(t, a2, testInventory("s2", "h2", gpuSpec{gpus: 2, islands: [][]int{{0, 1}}}), "i2")
	mustAllocate(t, a2, allocRequest{count: 3})
}

// TestTwoAggregatorsOneStore races allocations through two aggregators on
// one store (one MemoryStore; two clients of one etcd): every vGPU goes to
// exactly one lease.
func TestTwoAggregatorsOneStore(t *testing.T) {
	for _, w := range storeWorlds(t) {
		t.Run(w.name, func(t *testing.T) {
			clk := clock.NewFake(time.Time{})
			a1 := newTestAggregator(t, w.open(t), clk)
			mustRegister(t, a1, testInventory("s1", "h1", gpuSpec{gpus: 4, slots: 2}), "i1")
			a2 := newTestAggregator(t, w.open(t), clk) // sees s1 within its grace
			aggs := []*Aggregator{a1, a2}

			var wg sync.WaitGroup
			results := make(chan error, 12) // one result per allocation
			for i := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := aggs[i%2].allocate(context.Background(), allocRequest{count: 1})
					results <- err
				}()
			}
			wg.Wait()
			close(results)
			ok, exhausted := 0, 0
			for err := range results {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrExhausted):
					exhausted++
				default:
					t.Errorf("allocate: %v", err)
				}
			}
			if ok != 8 || exhausted != 4 {
				t.Errorf("%d allocations succeeded and %d found the pool full, want 8 and 4", ok, exhausted)
			}
			leases := map[string]bool{}
			for vgpu, id := range claimsOf(t, a1.store) {
				if leases[id] {
					t.Errorf("lease %s claims a second vGPU %s", id, vgpu)
				}
				leases[id] = true
			}
			if len(leases) != 8 {
				t.Errorf("%d leases hold claims, want 8", len(leases))
			}
		})
	}
}

func TestPool(t *testing.T) {
	s := NewMemoryStore()
	a := newTestAggregator(t, s, clock.NewFake(time.Time{}))
	twoHosts(t, a, 2)
	rec := mustAllocate(t, a, allocRequest{count: 2})
	p, err := a.pool(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.GetServers()) != 2 || p.GetServers()[0].GetInventory().GetServerId() != "s1" {
		t.Errorf("servers = %v", p.GetServers())
	}
	if len(p.GetLeased()) != 2 {
		t.Errorf("leased = %v", p.GetLeased())
	}
	for _, d := range rec.Devices {
		if p.GetLeased()[d.VGPU] != rec.ID {
			t.Errorf("leased[%s] = %q, want %q", d.VGPU, p.GetLeased()[d.VGPU], rec.ID)
		}
	}
	m, err := devicemap.Parse(p.GetDeviceMap())
	if err != nil || m.Len() != 4 || m.Devices[0].Host != "h1" || m.Devices[3].Host != "h2" {
		t.Errorf("pool map = %v, %v", m, err)
	}
	if islands := m.Islands(); len(islands) != 2 {
		t.Errorf("pool islands = %v, want one per host", islands)
	}
}

// TestOrphanClaims checks that the sweep drops a claim no lease holds and
// keeps one that names an unreadable lease.
func TestOrphanClaims(t *testing.T) {
	s := NewMemoryStore()
	a := newTestAggregator(t, s, clock.NewFake(time.Time{}))
	twoHosts(t, a, 2)
	s.Txn(ctxT(t), nil, []Op{
		Put(claimKey("GPU-s1-0/0"), []byte("lease-gone")),
		Put(claimKey("GPU-s1-1/0"), []byte("lease-unreadable")),
		Put(leaseKey("lease-unreadable"), []byte("{not json")),
	})
	mustSweep(t, a)
	c := claimsOf(t, s)
	if _, ok := c["GPU-s1-0/0"]; ok {
		t.Error("orphan claim kept")
	}
	if c["GPU-s1-1/0"] != "lease-unreadable" {
		t.Error("claim of an unreadable lease dropped")
	}
	rec := mustAllocate(t, a, allocRequest{count: 3})
	for _, d := range rec.Devices {
		if d.VGPU == "GPU-s1-1/0" {
			t.Error("allocated a vGPU claimed by an unreadable lease")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero", Config{}, ""},
		{"negative", Config{HeartbeatInterval: -1}, "negative"},
		{"timeout below two intervals", Config{HeartbeatInterval: 3 * time.Second, HeartbeatTimeout: 5 * time.Second}, "twice"},
		{"interval alone raises the timeout", Config{HeartbeatInterval: 4 * time.Second}, ""},
		{"default ttl too short", Config{DefaultLeaseTTL: time.Millisecond}, "minimum"},
		{"max below default", Config{DefaultLeaseTTL: time.Hour, MaxLeaseTTL: time.Minute}, "MaxLeaseTTL"},
		{"store and endpoints", Config{Store: NewMemoryStore(), EtcdEndpoints: []string{"x:1"}}, "excludes"},
		{"endpoints and data dir", Config{EtcdEndpoints: []string{"x:1"}, DataDir: "/d"}, "DataDir"},
		{"empty endpoint", Config{EtcdEndpoints: []string{""}}, "EtcdEndpoints[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := New(context.Background(), Config{HeartbeatInterval: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with a bad config = %v", err)
	}
}

func TestEmbeddedEtcdRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: quietLogger(), Clock: clock.NewFake(time.Time{})}
	a1, err := New(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mustRegister(t, a1, testInventory("s1", "h1", gpuSpec{gpus: 2}), "i1")
	rec := mustAllocate(t, a1, allocRequest{count: 2, ttl: time.Hour})
	if err := a1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	a2, err := New(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("New after restart: %v", err)
	}
	defer a2.Close()
	got, err := a2.lease(ctxT(t), rec.ID)
	if err != nil || len(got.Devices) != 2 {
		t.Fatalf("lease after restart = %+v, %v", got, err)
	}
	if _, err := a2.allocate(ctxT(t), allocRequest{count: 1}); !errors.Is(err, ErrExhausted) {
		t.Errorf("allocate = %v, want ErrExhausted: the claims survived too", err)
	}
}

func TestEmbeddedEtcdErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"data dir is a file", Config{DataDir: file}, "etcd data directory"},
		{"not ready in time", Config{DataDir: t.TempDir(), EtcdTimeout: time.Nanosecond}, "not ready after 1ns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = quietLogger()
			a, err := New(ctxT(t), tt.cfg)
			if err == nil {
				a.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "aggregator: ") {
				t.Errorf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestExternalEtcdUnreachable(t *testing.T) {
	ports, err := freeLoopbackPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	ep := "http://127.0.0.1:" + ports[0]
	start := time.Now()
	_, err = New(ctxT(t), Config{EtcdEndpoints: []string{ep}, EtcdTimeout: 500 * time.Millisecond, Logger: quietLogger()})
	want := fmt.Sprintf("aggregator: etcd at %s unreachable", ep)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("New = %v, want %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New took %v to fail", d)
	}
}
