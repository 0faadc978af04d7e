package aggregator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xgpu/xgpu/internal/pb"
)

// Key layout in the Store. Values are JSON.
const (
	keyPrefix     = "/xgpu/"
	serversPrefix = keyPrefix + "servers/" // + server id -> serverRecord
	leasesPrefix  = keyPrefix + "leases/"  // + lease id -> leaseRecord
	claimsPrefix  = keyPrefix + "claims/"  // + vGPU id -> lease id
)

func serverKey(id string) string { return serversPrefix + id }
func leaseKey(id string) string  { return leasesPrefix + id }
func claimKey(vgpu string) string {
	return claimsPrefix + vgpu
}

// serverRecord is a stored registration.
type serverRecord struct {
	Inventory *pb.Inventory
	// Instance is the server process's instance id.
	Instance string
	// Epoch is random per registration. A lease device remembers the epoch
	// it was allocated under; when the server's epoch differs (it registered
	// again) or the server is gone or dead, the device is lost.
	Epoch      string
	Registered time.Time
	// Dead is when a sweep declared this registration dead; zero while
	// alive. Kept so that a restarted aggregator gives no grace to a
	// server that was already dead: it must register again.
	Dead time.Time
}

type serverJSON struct {
	Inventory  json.RawMessage `json:"inventory"`
	Instance   string          `json:"instance"`
	Epoch      string          `json:"epoch"`
	Registered time.Time       `json:"registered"`
	Dead       *time.Time      `json:"dead,omitempty"`
}

func encodeServer(r *serverRecord) ([]byte, error) {
	inv, err := protojson.Marshal(r.Inventory)
	if err != nil {
		return nil, fmt.Errorf("aggregator: encode inventory of %q: %w", r.Inventory.GetServerId(), err)
	}
	j := serverJSON{Inventory: inv, Instance: r.Instance, Epoch: r.Epoch, Registered: r.Registered}
	if !r.Dead.IsZero() {
		j.Dead = &r.Dead
	}
	return json.Marshal(j)
}

func decodeServer(b []byte) (*serverRecord, error) {
	var j serverJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, err
	}
	inv := new(pb.Inventory)
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(j.Inventory, inv); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if inv.GetServerId() == "" || j.Instance == "" || j.Epoch == "" {
		return nil, fmt.Errorf("server id, instance or epoch missing")
	}
	r := &serverRecord{Inventory: inv, Instance: j.Instance, Epoch: j.Epoch, Registered: j.Registered}
	if j.Dead != nil {
		r.Dead = *j.Dead
	}
	return r, nil
}

// Lease states as stored.
const (
	stateActive   = "active"
	stateDegraded = "degraded"
)

// leaseRecord is a stored lease.
type leaseRecord struct {
	ID      string        `json:"id"`
	Owner   string        `json:"owner,omitempty"`
	State   string        `json:"state"`
	Created time.Time     `json:"created"`
	Expires time.Time     `json:"expires"`
	TTL     time.Duration `json:"ttlNs"`
	// Devices are the leased vGPUs in logical order.
	Devices []leaseDevice `json:"devices"`
	// Lost are the logical indices of devices lost with their server,
	// ascending.
	Lost []int `json:"lost,omitempty"`
	// DeviceMap is the devicemap JSON of Devices.
	DeviceMap json.RawMessage `json:"deviceMap"`
}

type leaseDevice struct {
	VGPU   string `json:"vgpu"`
	Server string `json:"server"`
	Epoch  string `json:"epoch"`
}

func encodeLease(r *leaseRecord) ([]byte, error) { return json.Marshal(r) }

func decodeLease(b []byte) (*leaseRecord, error) {
	r := new(leaseRecord)
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	if r.ID == "" || len(r.Devices) == 0 || (r.State != stateActive && r.State != stateDegraded) {
		return nil, fmt.Errorf("id, devices or state missing")
	}
	for _, i := range r.Lost {
		if i < 0 || i >= len(r.Devices) {
			return nil, fmt.Errorf("lost device %d out of range", i)
		}
	}
	return r, nil
}

// expired reports whether the lease has run out at now.
func (r *leaseRecord) expired(now time.Time) bool { return !now.Before(r.Expires) }

// isLost reports whether logical device i is lost.
func (r *leaseRecord) isLost(i int) bool {
	_, ok := slices.BinarySearch(r.Lost, i)
	return ok
}

// liveClaims returns the claim keys the lease still holds: one per device
// not lost.
func (r *leaseRecord) liveClaims() []string {
	keys := make([]string, 0, len(r.Devices))
	for i, d := range r.Devices {
		if !r.isLost(i) {
			keys = append(keys, claimKey(d.VGPU))
		}
	}
	return keys
}

func (r *leaseRecord) clone() *leaseRecord {
	c := *r
	c.Devices = slices.Clone(r.Devices)
	c.Lost = slices.Clone(r.Lost)
	c.DeviceMap = slices.Clone(r.DeviceMap)
	return &c
}

type serverEntry struct {
	rec *serverRecord
	mod int64
}

type leaseEntry struct {
	rec *leaseRecord
	mod int64
}

// state is the whole stored state, read at one revision.
type state struct {
	servers  map[string]serverEntry
	leases   map[string]leaseEntry
	claims   map[string]string // vGPU id -> lease id
	claimRev map[string]int64  // vGPU id -> ModRevision of its claim
	// bad lists keys whose values could not be decoded; they are ignored.
	bad []string
}

// loadState reads the whole state from s.
func loadState(ctx context.Context, s Store) (*state, error) {
	kvs, err := s.List(ctx, keyPrefix)
	if err != nil {
		return nil, err
	}
	st := &state{
		servers:  make(map[string]serverEntry),
		leases:   make(map[string]leaseEntry),
		claims:   make(map[string]string),
		claimRev: make(map[string]int64),
	}
	for _, kv := range kvs {
		switch {
		case strings.HasPrefix(kv.Key, serversPrefix):
			r, err := decodeServer(kv.Value)
			if err != nil || r.Inventory.GetServerId() != strings.TrimPrefix(kv.Key, serversPrefix) {
				st.bad = append(st.bad, kv.Key)
				continue
			}
			st.servers[r.Inventory.GetServerId()] = serverEntry{r, kv.ModRevision}
		case strings.HasPrefix(kv.Key, leasesPrefix):
			r, err := decodeLease(kv.Value)
			if err != nil || r.ID != strings.TrimPrefix(kv.Key, leasesPrefix) {
				st.bad = append(st.bad, kv.Key)
				continue
			}
			st.leases[r.ID] = leaseEntry{r, kv.ModRevision}
		case strings.HasPrefix(kv.Key, claimsPrefix):
			vgpu := strings.TrimPrefix(kv.Key, claimsPrefix)
			st.claims[vgpu] = string(kv.Value)
			st.claimRev[vgpu] = kv.ModRevision
		}
	}
	return st, nil
}
