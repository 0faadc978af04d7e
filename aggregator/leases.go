package aggregator

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
)

// MaxLeaseDevices is the largest lease: its transaction carries one claim
// per vGPU plus the lease key, within MaxTxnOps.
const MaxLeaseDevices = MaxTxnOps - 1

// allocRequest is a validated allocation request.
type allocRequest struct {
	count     int
	memory    uint64
	placement Placement
	ttl       time.Duration // 0: the default
	owner     string
}

func (a *Aggregator) checkAlloc(r *allocRequest) error {
	switch {
	case r.count <= 0:
		return errorf(ErrInvalid, "allocate: count %d: want at least 1", r.count)
	case r.count > MaxLeaseDevices:
		return errorf(ErrInvalid, "allocate: count %d: a lease holds at most %d vGPUs", r.count, MaxLeaseDevices)
	case r.placement != PlacementPack && r.placement != PlacementSpread:
		return errorf(ErrInvalid, "allocate: unknown placement %d", int(r.placement))
	case r.ttl < 0:
		return errorf(ErrInvalid, "allocate: ttl %v is negative", r.ttl)
	case r.ttl > 0 && r.ttl < MinLeaseTTL:
		return errorf(ErrInvalid, "allocate: ttl %v is below the minimum %v", r.ttl, MinLeaseTTL)
	case r.ttl > a.cfg.MaxLeaseTTL:
		return errorf(ErrInvalid, "allocate: ttl %v exceeds the maximum %v", r.ttl, a.cfg.MaxLeaseTTL)
	case len(r.owner) > maxNameLen || !utf8.ValidString(r.owner):
		return errorf(ErrInvalid, "allocate: owner must be UTF-8 of at most %d bytes", maxNameLen)
	}
	if r.ttl == 0 {
		r.ttl = a.cfg.DefaultLeaseTTL
	}
	return nil
}

// allocate leases r.count free vGPUs. See the Allocate RPC.
func (a *Aggregator) allocate(ctx context.Context, r allocRequest) (*leaseRecord, error) {
	if err := a.checkAlloc(&r); err != nil {
		return nil, err
	}
	a.allocMu.Lock()
	defer a.allocMu.Unlock()
	for range maxTxnRetries {
		st, err := a.loadState(ctx)
		if err != nil {
			return nil, err
		}
		now := a.clk.Now()
		// Expired leases still hold claims until deleted: free them first.
		if a.reapExpired(ctx, st, now) > 0 {
			if st, err = a.loadState(ctx); err != nil {
				return nil, err
			}
		}
		alive := a.aliveView(st, now)
		cands := candidates(st, alive, r.memory)
		if len(cands) < r.count {
			return nil, &InsufficientError{Free: len(cands), Asked: r.count, MemoryBytes: r.memory}
		}
		chosen, err := place(cands, r.count, r.placement)
		if err != nil {
			return nil, err
		}
		rec, err := newLease(st, alive, chosen, r, now)
		if err != nil {
			return nil, err
		}
		val, err := encodeLease(rec)
		if err != nil {
			return nil, err
		}
		conds := make([]Cond, 0, len(rec.Devices)+1)
		ops := make([]Op, 0, len(rec.Devices)+1)
		conds = append(conds, IfAbsent(leaseKey(rec.ID)))
		ops = append(ops, Put(leaseKey(rec.ID), val))
		for _, d := range rec.Devices {
			conds = append(conds, IfAbsent(claimKey(d.VGPU)))
			ops = append(ops, Put(claimKey(d.VGPU), []byte(rec.ID)))
		}
		_, err = a.store.Txn(ctx, conds, ops)
		if errors.Is(err, ErrConflict) {
			continue // another aggregator claimed one of them: look again
		}
		if err != nil {
			return nil, storeErr("allocate", err)
		}
		a.log.Info("aggregator: lease allocated", "lease", rec.ID, "owner", rec.Owner, "vgpus", len(rec.Devices),
			"placement", r.placement.String(), "ttl", rec.TTL)
		return rec, nil
	}
	return nil, errorf(ErrConflict, "allocate: gave up after %d attempts conflicting with concurrent allocations; retry", maxTxnRetries)
}

// hostGPU names a physical GPU of a host, for NVLink islands.
type hostGPU struct{ host, uuid string }

// islandsOf numbers the NVLink islands of the live servers' GPUs: the
// connected components, per host, of the NV peer links (listed by either
// GPU).
func islandsOf(st *state, alive map[string]bool) map[hostGPU]int {
	node := make(map[hostGPU]int)
	var parent []int
	ids := sortedKeys(st.servers)
	for _, id := range ids {
		if !alive[id] {
			continue
		}
		inv := st.servers[id].rec.Inventory
		for _, g := range inv.GetGpus() {
			k := hostGPU{inv.GetHost(), g.GetUuid()}
			if _, ok := node[k]; !ok {
				node[k] = len(parent)
				parent = append(parent, len(parent))
			}
		}
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for _, id := range ids {
		if !alive[id] {
			continue
		}
		inv := st.servers[id].rec.Inventory
		for _, g := range inv.GetGpus() {
			a := node[hostGPU{inv.GetHost(), g.GetUuid()}]
			for _, p := range g.GetPeers() {
				if p.GetKind() != string(devicemap.LinkNVLink) {
					continue
				}
				if b, ok := node[hostGPU{inv.GetHost(), p.GetPeerUuid()}]; ok {
					ra, rb := find(a), find(b)
					if ra != rb {
						parent[max(ra, rb)] = min(ra, rb)
					}
				}
			}
		}
	}
	islands := make(map[hostGPU]int, len(node))
	for k, n := range node {
		islands[k] = find(n)
	}
	return islands
}

// candidates returns the free vGPUs of live servers with at least memory
// bytes.
func candidates(st *state, alive map[string]bool, memory uint64) []candidate {
	islands := islandsOf(st, alive)
	var out []candidate
	for _, id := range sortedKeys(st.servers) {
		if !alive[id] {
			continue
		}
		inv := st.servers[id].rec.Inventory
		gpus := gpuIndex(inv)
		for _, v := range inv.GetVgpus() {
			if _, claimed := st.claims[v.GetId()]; claimed || v.GetMemoryBytes() < memory {
				continue
			}
			g := gpus[v.GetGpuUuid()]
			out = append(out, candidate{
				VGPU:     v.GetId(),
				Server:   id,
				Host:     inv.GetHost(),
				Island:   islands[hostGPU{inv.GetHost(), g.GetUuid()}],
				GPU:      g.GetUuid(),
				GPUIndex: int(g.GetIndex()),
				Slot:     int(v.GetSlot()),
			})
		}
	}
	return out
}

func gpuIndex(inv *pb.Inventory) map[string]*pb.GPU {
	m := make(map[string]*pb.GPU, len(inv.GetGpus()))
	for _, g := range inv.GetGpus() {
		m[g.GetUuid()] = g
	}
	return m
}

// poolWindow returns the device-map window of the pool: WindowFor the
// largest GPU of a live server, so that every lease uses the same windows.
func poolWindow(st *state, alive map[string]bool) uint64 {
	var largest uint64
	for id, e := range st.servers {
		if !alive[id] {
			continue
		}
		for _, g := range e.rec.Inventory.GetGpus() {
			largest = max(largest, g.GetMemoryBytes())
		}
	}
	return devicemap.WindowFor(largest)
}

// newLease builds the record of a lease of the chosen vGPUs.
func newLease(st *state, alive map[string]bool, chosen []candidate, r allocRequest, now time.Time) (*leaseRecord, error) {
	id := randomID("lease-", 12)
	devs := make([]devicemap.Device, len(chosen))
	for i, c := range chosen {
		inv := st.servers[c.Server].rec.Inventory
		g := gpuIndex(inv)[c.GPU]
		for _, v := range inv.GetVgpus() {
			if v.GetId() == c.VGPU {
				devs[i] = deviceOf(inv, g, v)
				break
			}
		}
	}
	m, err := devicemap.New(devs, devicemap.WithLeaseID(id), devicemap.WithWindow(poolWindow(st, alive)))
	if err != nil {
		return nil, errorf(ErrInvalid, "allocate: device map of %d vGPUs: %v", len(devs), err)
	}
	mapJSON, err := m.MarshalJSON()
	if err != nil {
		return nil, errorf(ErrInvalid, "allocate: device map: %v", err)
	}
	rec := &leaseRecord{
		ID:        id,
		Owner:     r.owner,
		State:     stateActive,
		Created:   now,
		Expires:   now.Add(r.ttl),
		TTL:       r.ttl,
		Devices:   make([]leaseDevice, len(m.Devices)),
		DeviceMap: mapJSON,
	}
	for i, d := range m.Devices {
		rec.Devices[i] = leaseDevice{VGPU: d.VGPU, Server: d.Server, Epoch: st.servers[d.Server].rec.Epoch}
	}
	return rec, nil
}

// checkLeaseID rejects ids no lease can have.
func checkLeaseID(op, id string) error {
	if err := checkName("lease_id", id); err != nil {
		return errorf(ErrInvalid, "%s: %v", op, err)
	}
	return nil
}

// getLease returns a lease that exists and has not expired at now.
func (a *Aggregator) getLease(ctx context.Context, op, id string, now time.Time) (*leaseRecord, int64, error) {
	if err := checkLeaseID(op, id); err != nil {
		return nil, 0, err
	}
	kv, err := a.store.Get(ctx, leaseKey(id))
	if err != nil {
		return nil, 0, storeErr(op, err)
	}
	if kv.ModRevision == 0 {
		return nil, 0, errorf(ErrNotFound, "%s: no lease %q", op, id)
	}
	rec, err := decodeLease(kv.Value)
	if err != nil {
		return nil, 0, errorf(ErrUnavailable, "%s: stored lease %q is unreadable: %v", op, id, err)
	}
	if rec.expired(now) {
		return nil, 0, errorf(ErrNotFound, "%s: lease %q expired at %s", op, id, rec.Expires.UTC().Format(time.RFC3339Nano))
	}
	return rec, kv.ModRevision, nil
}

// renew extends a lease by its TTL from now. See the Renew RPC.
func (a *Aggregator) renew(ctx context.Context, id string) (*leaseRecord, error) {
	for range maxTxnRetries {
		now := a.clk.Now()
		rec, mod, err := a.getLease(ctx, "renew", id, now)
		if err != nil {
			return nil, err
		}
		rec.Expires = now.Add(rec.TTL)
		val, err := encodeLease(rec)
		if err != nil {
			return nil, err
		}
		_, err = a.store.Txn(ctx, []Cond{IfUnchanged(leaseKey(id), mod)}, []Op{Put(leaseKey(id), val)})
		if errors.Is(err, ErrConflict) {
			continue // degraded or renewed meanwhile: read it again
		}
		if err != nil {
			return nil, storeErr("renew", err)
		}
		return rec, nil
	}
	return nil, errorf(ErrConflict, "renew %q: gave up after %d conflicting attempts; retry", id, maxTxnRetries)
}

// release ends a lease and frees its vGPUs. See the Release RPC.
func (a *Aggregator) release(ctx context.Context, id string) error {
	for range maxTxnRetries {
		rec, mod, err := a.getLease(ctx, "release", id, a.clk.Now())
		if err != nil {
			return err
		}
		err = a.deleteLease(ctx, rec, mod)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return storeErr("release", err)
		}
		a.log.Info("aggregator: lease released", "lease", id, "owner", rec.Owner)
		return nil
	}
	return errorf(ErrConflict, "release %q: gave up after %d conflicting attempts; retry", id, maxTxnRetries)
}

// deleteLease deletes a lease and the claims it still holds, if it is
// unchanged since mod.
func (a *Aggregator) deleteLease(ctx context.Context, rec *leaseRecord, mod int64) error {
	ops := []Op{Delete(leaseKey(rec.ID))}
	for _, k := range rec.liveClaims() {
		ops = append(ops, Delete(k))
	}
	_, err := a.store.Txn(ctx, []Cond{IfUnchanged(leaseKey(rec.ID), mod)}, ops)
	return err
}

// lease returns a lease. See the GetLease RPC.
func (a *Aggregator) lease(ctx context.Context, id string) (*leaseRecord, error) {
	rec, _, err := a.getLease(ctx, "get lease", id, a.clk.Now())
	return rec, err
}

// leases returns the unexpired leases, oldest first. See the ListLeases RPC.
func (a *Aggregator) leases(ctx context.Context) ([]*leaseRecord, error) {
	kvs, err := a.store.List(ctx, leasesPrefix)
	if err != nil {
		return nil, storeErr("list leases", err)
	}
	now := a.clk.Now()
	out := make([]*leaseRecord, 0, len(kvs))
	for _, kv := range kvs {
		rec, err := decodeLease(kv.Value)
		if err != nil {
			a.log.Warn("aggregator: unreadable lease in the store", "key", kv.Key, "err", err)
			continue
		}
		if !rec.expired(now) {
			out = append(out, rec)
		}
	}
	slices.SortFunc(out, func(x, y *leaseRecord) int {
		return cmp.Or(x.Created.Compare(y.Created), strings.Compare(x.ID, y.ID))
	})
	return out, nil
}

// pool describes the pool. See the Pool RPC.
func (a *Aggregator) pool(ctx context.Context) (*pb.PoolResponse, error) {
	st, err := a.loadState(ctx)
	if err != nil {
		return nil, err
	}
	now := a.clk.Now()
	alive := a.aliveView(st, now)
	resp := &pb.PoolResponse{Leased: make(map[string]string)}
	var devs []devicemap.Device
	for _, id := range sortedKeys(st.servers) {
		rec := st.servers[id].rec
		a.liveMu.Lock()
		last := a.heardLocked(id, rec)
		a.liveMu.Unlock()
		resp.Servers = append(resp.Servers, &pb.PoolServer{
			Inventory:           proto.Clone(rec.Inventory).(*pb.Inventory),
			Alive:               alive[id],
			LastHeartbeatUnixMs: last.UnixMilli(),
		})
		if alive[id] {
			gpus := gpuIndex(rec.Inventory)
			for _, v := range rec.Inventory.GetVgpus() {
				devs = append(devs, deviceOf(rec.Inventory, gpus[v.GetGpuUuid()], v))
			}
		}
	}
	for vgpu, leaseID := range st.claims {
		if e, ok := st.leases[leaseID]; ok && !e.rec.expired(now) {
			resp.Leased[vgpu] = leaseID
		}
	}
	// Pool order: host, then server, GPU index and slot; devicemap.Order
	// keeps the host order and refines the rest by NVLink island.
	slices.SortStableFunc(devs, func(x, y devicemap.Device) int {
		return cmp.Or(strings.Compare(x.Host, y.Host), strings.Compare(x.Server, y.Server),
			cmp.Compare(x.GPUIndex, y.GPUIndex), cmp.Compare(x.Slot, y.Slot))
	})
	m, err := devicemap.New(devs, devicemap.WithWindow(poolWindow(st, alive)))
	if err == nil {
		resp.DeviceMap, err = m.MarshalJSON()
	}
	if err != nil {
		// A pool larger than one address space still has a registry and
		// leases; only its whole-pool map cannot be drawn.
		a.log.Warn("aggregator: no device map of the whole pool", "vgpus", len(devs), "err", err)
		resp.DeviceMap = nil
	}
	return resp, nil
}

// sweep declares silent servers dead, degrades the leases that lost
// devices, deletes expired leases and claims no lease holds.
func (a *Aggregator) sweep(ctx context.Context) error {
	a.sweepMu.Lock()
	defer a.sweepMu.Unlock()
	st, err := a.loadState(ctx)
	if err != nil {
		return err
	}
	now := a.clk.Now()
	alive, died := a.markLiveness(st, now)
	var errs []error
	for _, id := range died {
		if err := a.recordDeath(ctx, st.servers[id], now); err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	a.reapExpired(ctx, st, now)
	live := 0
	for _, id := range sortedKeys(st.leases) {
		e := st.leases[id]
		if e.rec.expired(now) {
			continue
		}
		live++
		if err := a.degrade(ctx, st, alive, e); err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	metrics.Default().Leases().Set(float64(live))
	a.dropOrphanClaims(ctx, st)
	return errors.Join(errs...)
}

// markLiveness returns which stored servers are alive at now, and marks
// the silent ones dead so that their heartbeats are refused from now on.
// died lists the servers whose death is not stored yet, in id order.
func (a *Aggregator) markLiveness(st *state, now time.Time) (alive map[string]bool, died []string) {
	a.liveMu.Lock()
	defer a.liveMu.Unlock()
	alive = make(map[string]bool, len(st.servers))
	for _, id := range sortedKeys(st.servers) {
		e := st.servers[id]
		if a.aliveLocked(id, e.rec, now) {
			alive[id] = true
			continue
		}
		if e.rec.Dead.IsZero() {
			died = append(died, id)
		}
		if l := a.live[id]; (l != nil && l.epoch == e.rec.Epoch && l.dead) || !e.rec.Dead.IsZero() {
			continue // already declared
		}
		last, _ := a.lastHeardLocked(id, e.rec)
		a.live[id] = &liveness{instance: e.rec.Instance, epoch: e.rec.Epoch, lastHeard: last, dead: true}
		a.log.Warn("aggregator: server dead: no heartbeat", "server", id, "instance", e.rec.Instance,
			"silent_for", now.Sub(last).Round(time.Millisecond))
	}
	for id := range a.live {
		if _, ok := st.servers[id]; !ok {
			delete(a.live, id) // deregistered
		}
	}
	return alive, died
}

// recordDeath stores that a registration is dead, unless it changed
// meanwhile (ErrConflict).
func (a *Aggregator) recordDeath(ctx context.Context, e serverEntry, now time.Time) error {
	rec := *e.rec
	rec.Dead = now
	val, err := encodeServer(&rec)
	if err != nil {
		return err
	}
	id := rec.Inventory.GetServerId()
	_, err = a.store.Txn(ctx, []Cond{IfUnchanged(serverKey(id), e.mod)}, []Op{Put(serverKey(id), val)})
	return err
}

// reapExpired deletes the leases expired at now and returns how many it
// deleted. A lease changed meanwhile is left to the next sweep.
func (a *Aggregator) reapExpired(ctx context.Context, st *state, now time.Time) int {
	n := 0
	for _, id := range sortedKeys(st.leases) {
		e := st.leases[id]
		if !e.rec.expired(now) {
			continue
		}
		if err := a.deleteLease(ctx, e.rec, e.mod); err != nil {
			if !errors.Is(err, ErrConflict) {
				a.log.Warn("aggregator: deleting an expired lease failed", "lease", id, "err", err)
			}
			continue
		}
		n++
		a.log.Info("aggregator: lease expired", "lease", id, "owner", e.rec.Owner)
	}
	return n
}

// degrade marks the devices of a lease whose server is gone, dead or
// registered anew as lost, and frees their claims, in one transaction.
func (a *Aggregator) degrade(ctx context.Context, st *state, alive map[string]bool, e leaseEntry) error {
	var lost []int
	for i, d := range e.rec.Devices {
		if e.rec.isLost(i) {
			continue
		}
		srv, ok := st.servers[d.Server]
		if !ok || srv.rec.Epoch != d.Epoch || !alive[d.Server] {
			lost = append(lost, i)
		}
	}
	if len(lost) == 0 {
		return nil
	}
	rec := e.rec.clone()
	rec.State = stateDegraded
	rec.Lost = append(rec.Lost, lost...)
	slices.Sort(rec.Lost)
	val, err := encodeLease(rec)
	if err != nil {
		return err
	}
	ops := []Op{Put(leaseKey(rec.ID), val)}
	for _, i := range lost {
		ops = append(ops, Delete(claimKey(rec.Devices[i].VGPU)))
	}
	if _, err := a.store.Txn(ctx, []Cond{IfUnchanged(leaseKey(rec.ID), e.mod)}, ops); err != nil {
		return err
	}
	a.log.Warn("aggregator: lease degraded: devices lost with their server", "lease", rec.ID, "owner", rec.Owner,
		"lost", lost)
	return nil
}

// dropOrphanClaims deletes claims that no stored lease holds. A lease and
// its claims are written together, so in a state read at one revision a
// claim without its lease is garbage (left, for example, by a manual
// deletion). Claims naming a lease key that exists but could not be read
// are kept.
func (a *Aggregator) dropOrphanClaims(ctx context.Context, st *state) {
	unreadable := make(map[string]bool)
	for _, k := range st.bad {
		if id, ok := strings.CutPrefix(k, leasesPrefix); ok {
			unreadable[id] = true
		}
	}
	for _, vgpu := range slices.Sorted(maps.Keys(st.claims)) {
		leaseID := st.claims[vgpu]
		if unreadable[leaseID] {
			continue
		}
		if e, ok := st.leases[leaseID]; ok && holds(e.rec, vgpu) {
			continue
		}
		conds := []Cond{IfUnchanged(claimKey(vgpu), st.claimRev[vgpu]), IfAbsent(leaseKey(leaseID))}
		if e, ok := st.leases[leaseID]; ok {
			conds[1] = IfUnchanged(leaseKey(leaseID), e.mod)
		}
		if _, err := a.store.Txn(ctx, conds, []Op{Delete(claimKey(vgpu))}); err == nil {
			a.log.Warn("aggregator: dropped a claim no lease holds", "vgpu", vgpu, "lease", leaseID)
		}
	}
}

// holds reports whether the lease holds a live claim on vgpu.
func holds(rec *leaseRecord, vgpu string) bool {
	for i, d := range rec.Devices {
		if d.VGPU == vgpu {
			return !rec.isLost(i)
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// leaseToPB converts a stored lease to its gRPC form.
func leaseToPB(r *leaseRecord) *pb.Lease {
	l := &pb.Lease{
		Id:            r.ID,
		State:         pb.Lease_ACTIVE,
		DeviceMap:     slices.Clone([]byte(r.DeviceMap)),
		ExpiresUnixMs: r.Expires.UnixMilli(),
		TtlMs:         r.TTL.Milliseconds(),
		Owner:         r.Owner,
		CreatedUnixMs: r.Created.UnixMilli(),
	}
	if r.State == stateDegraded {
		l.State = pb.Lease_DEGRADED
	}
	for _, i := range r.Lost {
		l.LostDevices = append(l.LostDevices, int32(i))
	}
	return l
}
