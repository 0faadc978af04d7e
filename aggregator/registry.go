package aggregator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/pb"
)

// Limits on what a request may carry.
const (
	maxNameLen    = 256   // ids, host names, addresses, owner
	maxGPUs       = 1024  // per inventory
	maxVGPUs      = 16384 // per inventory
	maxTxnRetries = 8     // attempts of an operation that keeps conflicting
)

// checkName accepts a non-empty, printable name without spaces, at most
// maxNameLen bytes, as ids and host names must be.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s missing", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(s), maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not UTF-8", what, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%s %q contains a space or control character", what, s)
		}
	}
	return nil
}

// validateInventory checks an inventory on its own: ids, GPUs, vGPUs and
// everything a device map requires of them.
func validateInventory(inv *pb.Inventory) error {
	if inv == nil {
		return errors.New("inventory missing")
	}
	for _, f := range []struct{ what, v string }{
		{"server_id", inv.GetServerId()}, {"host", inv.GetHost()}, {"address", inv.GetAddress()},
	} {
		if err := checkName(f.what, f.v); err != nil {
			return err
		}
	}
	if _, port, err := net.SplitHostPort(inv.GetAddress()); err != nil || port == "" {
		return fmt.Errorf("address %q is not host:port", inv.GetAddress())
	}
	if len(inv.GetBackend()) > maxNameLen || len(inv.GetVersion()) > maxNameLen {
		return errors.New("backend or version longer than 256 bytes")
	}
	if n := len(inv.GetGpus()); n > maxGPUs {
		return fmt.Errorf("%d GPUs, more than the limit of %d", n, maxGPUs)
	}
	if n := len(inv.GetVgpus()); n > maxVGPUs {
		return fmt.Errorf("%d vGPUs, more than the limit of %d", n, maxVGPUs)
	}
	gpus := make(map[string]*pb.GPU, len(inv.GetGpus()))
	indices := make(map[int32]string, len(inv.GetGpus()))
	for i, g := range inv.GetGpus() {
		if err := checkName("gpus["+strconv.Itoa(i)+"].uuid", g.GetUuid()); err != nil {
			return err
		}
		if _, dup := gpus[g.GetUuid()]; dup {
			return fmt.Errorf("GPU %q listed twice", g.GetUuid())
		}
		gpus[g.GetUuid()] = g
		if g.GetIndex() < 0 {
			return fmt.Errorf("GPU %q has negative index %d", g.GetUuid(), g.GetIndex())
		}
		if other, dup := indices[g.GetIndex()]; dup {
			return fmt.Errorf("GPUs %q and %q both have index %d", other, g.GetUuid(), g.GetIndex())
		}
		indices[g.GetIndex()] = g.GetUuid()
		if g.GetMemoryBytes() == 0 {
			return fmt.Errorf("GPU %q has zero memory", g.GetUuid())
		}
	}
	vgpus := make(map[string]bool, len(inv.GetVgpus()))
	for i, v := range inv.GetVgpus() {
		if err := checkName("vgpus["+strconv.Itoa(i)+"].id", v.GetId()); err != nil {
			return err
		}
		if vgpus[v.GetId()] {
			return fmt.Errorf("vGPU %q listed twice", v.GetId())
		}
		vgpus[v.GetId()] = true
		g, ok := gpus[v.GetGpuUuid()]
		switch {
		case !ok:
			return fmt.Errorf("vGPU %q references unknown GPU %q", v.GetId(), v.GetGpuUuid())
		case v.GetGpuIndex() != g.GetIndex():
			return fmt.Errorf("vGPU %q has gpu_index %d, but GPU %q has index %d", v.GetId(), v.GetGpuIndex(), g.GetUuid(), g.GetIndex())
		case v.GetMemoryBytes() == 0:
			return fmt.Errorf("vGPU %q has zero memory", v.GetId())
		case v.GetMemoryBytes() > g.GetMemoryBytes():
			return fmt.Errorf("vGPU %q has %d bytes of memory, more than its GPU's %d", v.GetId(), v.GetMemoryBytes(), g.GetMemoryBytes())
		case v.GetComputeShare() == 0 || v.GetComputeShare() > 100:
			return fmt.Errorf("vGPU %q has compute_share %d, want 1-100", v.GetId(), v.GetComputeShare())
		}
		// The device map holds the remaining rules (UUID and vGPU id
		// formats, peer links): check the device as a map of one.
		if _, err := devicemap.New([]devicemap.Device{deviceOf(inv, g, v)}); err != nil {
			var pe *devicemap.ParseError
			if errors.As(err, &pe) && pe.Field != "" {
				return fmt.Errorf("vGPU %q: %s: %v", v.GetId(), pe.Field, pe.Err)
			}
			return fmt.Errorf("vGPU %q: %v", v.GetId(), err)
		}
	}
	return nil
}

// deviceOf returns the device-map entry of vGPU v of GPU g of inv.
func deviceOf(inv *pb.Inventory, g *pb.GPU, v *pb.VGPU) devicemap.Device {
	d := devicemap.Device{
		Host:        inv.GetHost(),
		Server:      inv.GetServerId(),
		Address:     inv.GetAddress(),
		GPUUUID:     g.GetUuid(),
		GPUIndex:    int(g.GetIndex()),
		VGPU:        v.GetId(),
		Slot:        int(v.GetSlot()),
		MemoryQuota: v.GetMemoryBytes(),
		Properties: devicemap.Properties{
			Name:                g.GetName(),
			PCIBusID:            g.GetPciBusId(),
			MultiprocessorCount: int(g.GetMultiprocessors()),
			TotalMemory:         g.GetMemoryBytes(),
		},
	}
	if g.GetCcMajor() > 0 || g.GetCcMinor() > 0 {
		d.Properties.ComputeCapability = fmt.Sprintf("%d.%d", g.GetCcMajor(), g.GetCcMinor())
	}
	for _, p := range g.GetPeers() {
		d.Peers = append(d.Peers, devicemap.PeerLink{
			PeerUUID: p.GetPeerUuid(),
			Kind:     devicemap.LinkKind(p.GetKind()),
			NVLinks:  int(p.GetNvlinks()),
		})
	}
	return d
}

// checkAgainstPool rejects an inventory that offers a GPU, a vGPU or an
// address that another live server already offers.
func checkAgainstPool(inv *pb.Inventory, st *state, alive map[string]bool) error {
	gpus := make(map[string]bool, len(inv.GetGpus()))
	for _, g := range inv.GetGpus() {
		gpus[g.GetUuid()] = true
	}
	vgpus := make(map[string]bool, len(inv.GetVgpus()))
	for _, v := range inv.GetVgpus() {
		vgpus[v.GetId()] = true
	}
	for _, id := range sortedKeys(st.servers) {
		other := st.servers[id].rec.Inventory
		if id == inv.GetServerId() || !alive[id] {
			continue
		}
		if other.GetAddress() == inv.GetAddress() {
			return fmt.Errorf("address %q is already used by server %q", inv.GetAddress(), id)
		}
		for _, g := range other.GetGpus() {
			if gpus[g.GetUuid()] {
				return fmt.Errorf("GPU %q is already offered by server %q", g.GetUuid(), id)
			}
		}
		for _, v := range other.GetVgpus() {
			if vgpus[v.GetId()] {
				return fmt.Errorf("vGPU %q is already offered by server %q", v.GetId(), id)
			}
		}
	}
	return nil
}

// randomID returns prefix followed by n random bytes in hex.
func randomID(prefix string, n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b)
}

// heardLocked returns the last sign of life of server id (registered as
// rec) that this aggregator knows of: its registration or its last
// heartbeat here, whichever is later. a.liveMu must be held.
func (a *Aggregator) heardLocked(id string, rec *serverRecord) time.Time {
	last := rec.Registered
	if l := a.live[id]; l != nil && l.epoch == rec.Epoch && l.lastHeard.After(last) {
		last = l.lastHeard
	}
	return last
}

// lastHeardLocked returns the time liveness counts from: heardLocked, or
// this aggregator's start if later (the restart grace). dead reports a
// sweep's verdict on this registration, this aggregator's or a stored
// one. a.liveMu must be held.
func (a *Aggregator) lastHeardLocked(id string, rec *serverRecord) (last time.Time, dead bool) {
	last = a.heardLocked(id, rec)
	if a.started.After(last) {
		last = a.started
	}
	if l := a.live[id]; l != nil && l.epoch == rec.Epoch {
		dead = l.dead
	}
	return last, dead || !rec.Dead.IsZero()
}

// aliveLocked reports whether the registration is alive at now.
func (a *Aggregator) aliveLocked(id string, rec *serverRecord, now time.Time) bool {
	last, dead := a.lastHeardLocked(id, rec)
	return !dead && now.Sub(last) < a.cfg.HeartbeatTimeout
}

// aliveView returns which stored servers are alive at now, changing
// nothing.
func (a *Aggregator) aliveView(st *state, now time.Time) map[string]bool {
	a.liveMu.Lock()
	defer a.liveMu.Unlock()
	alive := make(map[string]bool, len(st.servers))
	for id, e := range st.servers {
		alive[id] = a.aliveLocked(id, e.rec, now)
	}
	return alive
}

// register records a server's inventory. See the Register RPC.
func (a *Aggregator) register(ctx context.Context, inv *pb.Inventory, instance string) error {
	if err := validateInventory(inv); err != nil {
		return errorf(ErrInvalid, "register: %v", err)
	}
	if err := checkName("instance", instance); err != nil {
		return errorf(ErrInvalid, "register %q: %v", inv.GetServerId(), err)
	}
	id := inv.GetServerId()
	a.regMu.Lock()
	defer a.regMu.Unlock()
	for range maxTxnRetries {
		st, err := a.loadState(ctx)
		if err != nil {
			return err
		}
		now := a.clk.Now()
		alive := a.aliveView(st, now)
		prev, had := st.servers[id]
		if had && alive[id] {
			if prev.rec.Instance != instance {
				a.liveMu.Lock()
				last, _ := a.lastHeardLocked(id, prev.rec)
				a.liveMu.Unlock()
				return errorf(ErrAlreadyRegistered,
					"register: server id %q is held by live instance %q (heard %v ago); instance %q may register once it deregisters or is silent for %v",
					id, prev.rec.Instance, now.Sub(last).Round(time.Millisecond), instance, a.cfg.HeartbeatTimeout)
			}
			if proto.Equal(prev.rec.Inventory, inv) {
				a.heard(id, prev.rec, now)
				return nil
			}
		}
		if err := checkAgainstPool(inv, st, alive); err != nil {
			return errorf(ErrInvalid, "register %q: %v", id, err)
		}
		rec := &serverRecord{
			Inventory:  proto.Clone(inv).(*pb.Inventory),
			Instance:   instance,
			Epoch:      randomID("", 8),
			Registered: now,
		}
		val, err := encodeServer(rec)
		if err != nil {
			return err
		}
		_, err = a.store.Txn(ctx, []Cond{IfUnchanged(serverKey(id), prev.mod)}, []Op{Put(serverKey(id), val)})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return storeErr("register", err)
		}
		a.heard(id, rec, now)
		a.log.Info("aggregator: server registered", "server", id, "instance", instance, "host", inv.GetHost(),
			"address", inv.GetAddress(), "vgpus", len(inv.GetVgpus()), "replaced", had)
		if had {
			// Leases holding devices of the previous registration lost them.
			if err := a.sweep(ctx); err != nil {
				a.log.Warn("aggregator: sweep after registration failed; the next sweep retries", "err", err)
			}
		}
		return nil
	}
	return errorf(ErrConflict, "register %q: gave up after %d conflicting attempts; retry", id, maxTxnRetries)
}

// heard records a sign of life of a registration.
func (a *Aggregator) heard(id string, rec *serverRecord, now time.Time) {
	a.liveMu.Lock()
	defer a.liveMu.Unlock()
	a.live[id] = &liveness{instance: rec.Instance, epoch: rec.Epoch, lastHeard: now}
}

// heartbeat records that server id's instance is alive. See the Heartbeat
// RPC.
func (a *Aggregator) heartbeat(ctx context.Context, id, instance string) error {
	if err := checkName("server_id", id); err != nil {
		return errorf(ErrInvalid, "heartbeat: %v", err)
	}
	if err := checkName("instance", instance); err != nil {
		return errorf(ErrInvalid, "heartbeat %q: %v", id, err)
	}
	now := a.clk.Now()
	a.liveMu.Lock()
	if l := a.live[id]; l != nil && l.instance == instance && !l.dead && now.Sub(l.lastHeard) < a.cfg.HeartbeatTimeout {
		l.lastHeard = now
		a.liveMu.Unlock()
		return nil
	}
	a.liveMu.Unlock()

	// Not heard from recently here (a restart of the aggregator, or a
	// registration made through another aggregator): ask the store.
	kv, err := a.store.Get(ctx, serverKey(id))
	if err != nil {
		return storeErr("heartbeat", err)
	}
	if kv.ModRevision == 0 {
		return errorf(ErrNotFound, "heartbeat: server %q is not registered; register again", id)
	}
	rec, err := decodeServer(kv.Value)
	if err != nil {
		return errorf(ErrNotFound, "heartbeat: registration of server %q is unreadable (%v); register again", id, err)
	}
	if rec.Instance != instance {
		return errorf(ErrNotFound, "heartbeat: server %q is registered by instance %q, not %q; register again", id, rec.Instance, instance)
	}
	a.liveMu.Lock()
	defer a.liveMu.Unlock()
	if !a.aliveLocked(id, rec, now) {
		return errorf(ErrNotFound, "heartbeat: registration of server %q timed out (silent for more than %v); register again",
			id, a.cfg.HeartbeatTimeout)
	}
	a.live[id] = &liveness{instance: rec.Instance, epoch: rec.Epoch, lastHeard: now}
	return nil
}

// deregister removes a registration. See the Deregister RPC.
func (a *Aggregator) deregister(ctx context.Context, id, instance string) error {
	if err := checkName("server_id", id); err != nil {
		return errorf(ErrInvalid, "deregister: %v", err)
	}
	if err := checkName("instance", instance); err != nil {
		return errorf(ErrInvalid, "deregister %q: %v", id, err)
	}
	a.regMu.Lock()
	defer a.regMu.Unlock()
	for range maxTxnRetries {
		kv, err := a.store.Get(ctx, serverKey(id))
		if err != nil {
			return storeErr("deregister", err)
		}
		if kv.ModRevision == 0 {
			return errorf(ErrNotFound, "deregister: server %q is not registered", id)
		}
		if rec, err := decodeServer(kv.Value); err == nil && rec.Instance != instance {
			return errorf(ErrNotFound, "deregister: server %q is registered by instance %q, not %q", id, rec.Instance, instance)
		}
		_, err = a.store.Txn(ctx, []Cond{IfUnchanged(kv.Key, kv.ModRevision)}, []Op{Delete(kv.Key)})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return storeErr("deregister", err)
		}
		a.liveMu.Lock()
		delete(a.live, id)
		a.liveMu.Unlock()
		a.log.Info("aggregator: server deregistered", "server", id, "instance", instance)
		if err := a.sweep(ctx); err != nil {
			a.log.Warn("aggregator: sweep after deregistration failed; the next sweep retries", "err", err)
		}
		return nil
	}
	return errorf(ErrConflict, "deregister %q: gave up after %d conflicting attempts; retry", id, maxTxnRetries)
}

// storeErr wraps a Store failure of op unless it already carries a kind.
func storeErr(op string, err error) error {
	var e *Error
	if errors.As(err, &e) || errors.Is(err, ErrServerClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return errorf(ErrUnavailable, "%s: store: %v", op, err)
}

func (a *Aggregator) loadState(ctx context.Context) (*state, error) {
	st, err := loadState(ctx, a.store)
	if err != nil {
		return nil, storeErr("read state", err)
	}
	return st, nil
}
