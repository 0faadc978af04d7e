package aggregator

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Store is the aggregator's persistent state: a key-value store with
// revisions and conditional transactions, the subset of etcd it needs. The
// aggregator keeps server registrations, leases and one claim key per leased
// vGPU in it, as JSON values under the "/xgpu/" prefix. Because a lease and
// its claims are created in one Txn that requires every claim key to be
// absent, several aggregators sharing one Store never hand out a vGPU twice.
//
// NewEtcdStore adapts an etcd client; NewMemoryStore is an in-memory Store
// with the same semantics (revisions, conflicts, limits) for tests.
// Implementations are safe for concurrent use.
type Store interface {
	// Get returns key's value and modification revision; a KeyValue with
	// ModRevision 0 and a nil Value when key is absent.
	Get(ctx context.Context, key string) (KeyValue, error)
	// List returns every key with the prefix, in key order, all read at one
	// revision.
	List(ctx context.Context, prefix string) ([]KeyValue, error)
	// Txn applies ops, in order and atomically, if every cond holds, and
	// returns the store's revision after it. If a cond is false it changes
	// nothing and returns an error wrapping ErrConflict. A key may appear in
	// ops at most once.
	Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error)
	// Close releases the Store's resources; later calls fail with
	// ErrServerClosed.
	Close() error
}

// KeyValue is one key of a Store.
type KeyValue struct {
	Key   string
	Value []byte
	// ModRevision is the store revision of the key's last change; 0 means
	// the key is absent.
	ModRevision int64
}

// Cond is a condition of a Txn on a key's ModRevision: equal to
// ModRevision, or different from it when NotEqual. ModRevision 0 tests for
// absence (or, with NotEqual, presence).
type Cond struct {
	Key         string
	ModRevision int64
	NotEqual    bool
}

// Op is a write of a Txn: put Value at Key, or delete Key when Delete.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// MaxTxnOps is the most conditions, and the most operations, one Txn may
// carry in the stores this package makes: the embedded etcd is started with
// this limit and the MemoryStore enforces it. A lease needs one condition and
// one operation per vGPU plus one. An external etcd cluster applies its own
// --max-txn-ops (128 by default), which then bounds the size of a lease.
const MaxTxnOps = 2048

// IfAbsent is the condition that key does not exist.
func IfAbsent(key string) Cond { return Cond{Key: key} }

// IfUnchanged is the condition that key's ModRevision is still rev.
func IfUnchanged(key string, rev int64) Cond { return Cond{Key: key, ModRevision: rev} }

// Put is the Op that writes value at key.
func Put(key string, value []byte) Op { return Op{Key: key, Value: value} }

// Delete is the Op that deletes key.
func Delete(key string) Op { return Op{Key: key, Delete: true} }

// checkTxn applies the limits etcd applies to a transaction.
func checkTxn(conds []Cond, ops []Op) error {
	if len(conds) > MaxTxnOps || len(ops) > MaxTxnOps {
		return errorf(ErrInvalid, "store: transaction of %d conditions and %d operations exceeds the limit of %d",
			len(conds), len(ops), MaxTxnOps)
	}
	seen := make(map[string]struct{}, len(ops))
	for _, op := range ops {
		if op.Key == "" {
			return errorf(ErrInvalid, "store: empty key in a transaction")
		}
		if _, dup := seen[op.Key]; dup {
			return errorf(ErrInvalid, "store: key %q written twice in one transaction", op.Key)
		}
		seen[op.Key] = struct{}{}
	}
	return nil
}

// MemoryStore is a Store in memory, for tests and for a throw-away pool. It
// keeps revisions as etcd does: one store-wide counter, incremented by every
// transaction that writes, stamped on every key it writes.
type MemoryStore struct {
	mu     sync.Mutex // guards the fields below
	rev    int64
	kvs    map[string]memValue
	closed bool
}

type memValue struct {
	value []byte
	mod   int64
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{kvs: make(map[string]memValue)}
}

func (s *MemoryStore) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("%w: store closed", ErrServerClosed)
	}
	return nil
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, key string) (KeyValue, error) {
	if err := s.enter(ctx); err != nil {
		return KeyValue{}, err
	}
	defer s.mu.Unlock()
	v, ok := s.kvs[key]
	if !ok {
		return KeyValue{Key: key}, nil
	}
	return KeyValue{Key: key, Value: bytes.Clone(v.value), ModRevision: v.mod}, nil
}

// List implements Store.
func (s *MemoryStore) List(ctx context.Context, prefix string) ([]KeyValue, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []KeyValue
	for k, v := range s.kvs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, KeyValue{Key: k, Value: bytes.Clone(v.value), ModRevision: v.mod})
		}
	}
	slices.SortFunc(out, func(a, b KeyValue) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Txn implements Store.
func (s *MemoryStore) Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	if err := checkTxn(conds, ops); err != nil {
		return 0, err
	}
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	for _, c := range conds {
		if (s.kvs[c.Key].mod == c.ModRevision) == c.NotEqual {
			return 0, fmt.Errorf("%w: condition on %q failed", ErrConflict, c.Key)
		}
	}
	// Like etcd, a transaction that changes nothing (no ops, or deletes of
	// absent keys only) leaves the revision alone.
	next, changed := s.rev+1, false
	for _, op := range ops {
		if op.Delete {
			if _, ok := s.kvs[op.Key]; ok {
				delete(s.kvs, op.Key)
				changed = true
			}
			continue
		}
		s.kvs[op.Key] = memValue{value: bytes.Clone(op.Value), mod: next}
		changed = true
	}
	if changed {
		s.rev = next
	}
	return s.rev, nil
}

// Close implements Store.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
