package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// storeWorld makes Stores that share one backing state, so that a test can
// race two of them.
type storeWorld struct {
	name string
	// open returns a new Store on the shared state.
	open func(t *testing.T) Store
}

// storeWorlds returns the in-memory store and stores on one embedded etcd
// in a temporary directory: every contract test runs on both.
func storeWorlds(t *testing.T) []storeWorld {
	mem := NewMemoryStore()
	e, err := startEmbeddedEtcd(context.Background(), t.TempDir(), 30*time.Second, quietLogger())
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	t.Cleanup(func() { e.close() })
	return []storeWorld{
		{"memory", func(t *testing.T) Store { return mem }},
		{"etcd", func(t *testing.T) Store {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.clientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() })
			return NewEtcdStore(cli)
		}},
	}
}

func TestStoreContract(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s Store, k func(string) string)
	}{
		{"get of an absent key", func(t *testing.T, s Store, k func(string) string) {
			kv, err := s.Get(ctxT(t), k("none"))
			if err != nil || kv.ModRevision != 0 || kv.Value != nil || kv.Key != k("none") {
				t.Errorf("Get = %+v, %v; want an absent key", kv, err)
			}
		}},
		{"put then get", func(t *testing.T, s Store, k func(string) string) {
			rev, err := s.Txn(ctxT(t), []Cond{IfAbsent(k("a"))}, []Op{Put(k("a"), []byte("1"))})
			if err != nil || rev <= 0 {
				t.Fatalf("Txn = %d, %v", rev, err)
			}
			kv, err := s.Get(ctxT(t), k("a"))
			if err != nil || string(kv.Value) != "1" || kv.ModRevision != rev {
				t.Errorf("Get = %+v, %v; want value 1 at revision %d", kv, err, rev)
			}
		}},
		{"if absent on a present key conflicts and changes nothing", func(t *testing.T, s Store, k func(string) string) {
			rev, _ := s.Txn(ctxT(t), nil, []Op{Put(k("a"), []byte("1"))})
			_, err := s.Txn(ctxT(t), []Cond{IfAbsent(k("b")), IfAbsent(k("a"))}, []Op{Put(k("a"), []byte("2")), Put(k("b"), []byte("2"))})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("Txn = %v, want ErrConflict", err)
			}
			a, _ := s.Get(ctxT(t), k("a"))
			b, _ := s.Get(ctxT(t), k("b"))
			if string(a.Value) != "1" || a.ModRevision != rev || b.ModRevision != 0 {
				t.Errorf("after a failed Txn: a = %+v, b = %+v", a, b)
			}
		}},
		{"if unchanged", func(t *testing.T, s Store, k func(string) string) {
			rev1, _ := s.Txn(ctxT(t), nil, []Op{Put(k("a"), []byte("1"))})
			rev2, err := s.Txn(ctxT(t), []Cond{IfUnchanged(k("a"), rev1)}, []Op{Put(k("a"), []byte("2"))})
			if err != nil || rev2 <= rev1 {
				t.Fatalf("Txn on the current revision = %d, %v", rev2, err)
			}
			if _, err := s.Txn(ctxT(t), []Cond{IfUnchanged(k("a"), rev1)}, []Op{Put(k("a"), []byte("3"))}); !errors.Is(err, ErrConflict) {
				t.Errorf("Txn on a stale revision = %v, want ErrConflict", err)
			}
			if kv, _ := s.Get(ctxT(t), k("a")); string(kv.Value) != "2" {
				t.Errorf("value = %q, want 2", kv.Value)
			}
		}},
		{"not equal", func(t *testing.T, s Store, k func(string) string) {
			if _, err := s.Txn(ctxT(t), []Cond{{Key: k("a"), NotEqual: true}}, []Op{Put(k("b"), nil)}); !errors.Is(err, ErrConflict) {
				t.Errorf("Txn requiring an absent key to exist = %v, want ErrConflict", err)
			}
			s.Txn(ctxT(t), nil, []Op{Put(k("a"), []byte("x"))})
			if _, err := s.Txn(ctxT(t), []Cond{{Key: k("a"), NotEqual: true}}, []Op{Put(k("b"), nil)}); err != nil {
				t.Errorf("Txn requiring a present key to exist = %v", err)
			}
		}},
		{"delete", func(t *testing.T, s Store, k func(string) string) {
			s.Txn(ctxT(t), nil, []Op{Put(k("a"), []byte("1")), Put(k("b"), []byte("1"))})
			if _, err := s.Txn(ctxT(t), nil, []Op{Delete(k("a")), Delete(k("never"))}); err != nil {
				t.Fatal(err)
			}
			a, _ := s.Get(ctxT(t), k("a"))
			b, _ := s.Get(ctxT(t), k("b"))
			if a.ModRevision != 0 || b.ModRevision == 0 {
				t.Errorf("after delete: a = %+v, b = %+v", a, b)
			}
		}},
		{"list by prefix in key order", func(t *testing.T, s Store, k func(string) string) {
			s.Txn(ctxT(t), nil, []Op{Put(k("p/b"), []byte("2")), Put(k("p/a"), []byte("1")), Put(k("q"), []byte("3"))})
			kvs, err := s.List(ctxT(t), k("p/"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range kvs {
				got = append(got, strings.TrimPrefix(kv.Key, k(""))+"="+string(kv.Value))
			}
			if strings.Join(got, ",") != "p/a=1,p/b=2" {
				t.Errorf("List = %v", got)
			}
		}},
		{"one revision per transaction", func(t *testing.T, s Store, k func(string) string) {
			rev, _ := s.Txn(ctxT(t), nil, []Op{Put(k("a"), nil), Put(k("b"), nil)})
			a, _ := s.Get(ctxT(t), k("a"))
			b, _ := s.Get(ctxT(t), k("b"))
			if a.ModRevision != rev || b.ModRevision != rev {
				t.Errorf("revisions %d and %d, want both %d", a.ModRevision, b.ModRevision, rev)
			}
		}},
		{"a key written twice is refused", func(t *testing.T, s Store, k func(string) string) {
			_, err := s.Txn(ctxT(t), nil, []Op{Put(k("a"), nil), Delete(k("a"))})
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Txn = %v, want ErrInvalid", err)
			}
		}},
		{"too many operations are refused", func(t *testing.T, s Store, k func(string) string) {
			ops := make([]Op, MaxTxnOps+1)
			for i := range ops {
				ops[i] = Put(k(fmt.Sprint(i)), nil)
			}
			if _, err := s.Txn(ctxT(t), nil, ops); !errors.Is(err, ErrInvalid) {
				t.Errorf("Txn = %v, want ErrInvalid", err)
			}
			if kvs, _ := s.List(ctxT(t), k("")); len(kvs) != 0 {
				t.Errorf("%d keys written", len(kvs))
			}
		}},
		{"the largest transaction goes through", func(t *testing.T, s Store, k func(string) string) {
			conds := make([]Cond, MaxTxnOps)
			ops := make([]Op, MaxTxnOps)
			for i := range ops {
				conds[i] = IfAbsent(k(fmt.Sprint(i)))
				ops[i] = Put(k(fmt.Sprint(i)), []byte("lease"))
			}
			if _, err := s.Txn(ctxT(t), conds, ops); err != nil {
				t.Errorf("Txn of %d operations: %v", MaxTxnOps, err)
			}
		}},
		{"a canceled context", func(t *testing.T, s Store, k func(string) string) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := s.Get(ctx, k("a")); !errors.Is(err, context.Canceled) {
				t.Errorf("Get = %v, want context.Canceled", err)
			}
		}},
	}
	for _, w := range storeWorlds(t) {
		t.Run(w.name, func(t *testing.T) {
			s := w.open(t)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					prefix := "/test/" + strings.ReplaceAll(tt.name, " ", "_") + "/"
					tt.run(t, s, func(key string) string { return prefix + key })
				})
			}
		})
	}
}

// TestStoreClaimRace has several stores on one state race to claim the same
// vGPUs, as two aggregators would: for every vGPU exactly one wins.
func TestStoreClaimRace(t *testing.T) {
	const racers, rounds = 4, 20
	for _, w := range storeWorlds(t) {
		t.Run(w.name, func(t *testing.T) {
			stores := make([]Store, racers)
			for i := range stores {
				stores[i] = w.open(t)
			}
			wins := make([]int, racers)
			var wg sync.WaitGroup
			for r := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range rounds {
						lease := fmt.Sprintf("lease-%d-%d", r, i)
						claim := claimKey(fmt.Sprintf("GPU-race-%d/0", i))
						_, err := stores[r].Txn(context.Background(),
							[]Cond{IfAbsent(leaseKey(lease)), IfAbsent(claim)},
							[]Op{Put(leaseKey(lease), []byte("{}")), Put(claim, []byte(lease))})
						switch {
						case err == nil:
							wins[r]++
						case !errors.Is(err, ErrConflict):
							t.Errorf("racer %d: %v", r, err)
						}
					}
				}()
			}
			wg.Wait()
			total := 0
			for _, n := range wins {
				total += n
			}
			if total != rounds {
				t.Errorf("%d claims won for %d vGPUs (wins per racer %v), want exactly one each", total, rounds, wins)
			}
			for i := range rounds {
				kv, _ := stores[0].Get(ctxT(t), claimKey(fmt.Sprintf("GPU-race-%d/0", i)))
				lease, _ := stores[0].Get(ctxT(t), leaseKey(string(kv.Value)))
				if kv.ModRevision == 0 || lease.ModRevision != kv.ModRevision {
					t.Errorf("vGPU %d: claim %+v without its lease written in the same transaction", i, kv)
				}
			}
		})
	}
}

func TestStoreClosed(t *testing.T) {
	tests := []struct {
		name string
		s    Store
	}{
		{"memory", NewMemoryStore()},
		{"etcd", NewEtcdStore(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := tt.s.Get(ctxT(t), "/k"); !errors.Is(err, ErrServerClosed) {
				t.Errorf("Get after Close = %v, want ErrServerClosed", err)
			}
			if _, err := tt.s.List(ctxT(t), "/"); !errors.Is(err, ErrServerClosed) {
				t.Errorf("List after Close = %v, want ErrServerClosed", err)
			}
			if _, err := tt.s.Txn(ctxT(t), nil, []Op{Put("/k", nil)}); !errors.Is(err, ErrServerClosed) {
				t.Errorf("Txn after Close = %v, want ErrServerClosed", err)
			}
		})
	}
}

// recorder is a slog.Handler that keeps what it is given.
type recorder struct {
	mu   sync.Mutex // guards recs
	recs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, b.String())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func TestEtcdLogBridge(t *testing.T) {
	closing := new(atomic.Bool)
	tests := []struct {
		name string
		log  func(l *zap.Logger)
		want string // "" for nothing
	}{
		{"warning with fields", func(l *zap.Logger) { l.With(zap.String("member", "m1")).Warn("slow fdatasync", zap.Int("ms", 1200)) },
			"WARN slow fdatasync component=etcd member=m1 ms=1200"},
		{"below the minimum", func(l *zap.Logger) { l.Info("ready") }, ""},
		{"error", func(l *zap.Logger) { l.Error("disk full") }, "ERROR disk full component=etcd"},
		{"expected warning", func(l *zap.Logger) { l.Warn("simple token is not cryptographically signed") },
			"DEBUG simple token is not cryptographically signed component=etcd"},
		{"while closing", func(l *zap.Logger) { closing.Store(true); l.Error("accept failed") },
			"DEBUG accept failed component=etcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			tt.log(zap.New(&slogCore{log: slog.New(rec), min: zapcore.WarnLevel, closing: closing}))
			got := strings.Join(rec.recs, "\n")
			if got != tt.want {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
}
