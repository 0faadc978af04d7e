package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdStore is the Store over an etcd client.
type etcdStore struct {
	cli     *clientv3.Client
	closed  atomic.Bool
	onClose func() error // releases what the aggregator opened; nil for NewEtcdStore
}

var _ Store = (*etcdStore)(nil)

// NewEtcdStore returns a Store over an etcd client. The caller keeps
// ownership of cli: the Store's Close does not close it.
func NewEtcdStore(cli *clientv3.Client) Store { return &etcdStore{cli: cli} }

func (s *etcdStore) err(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("aggregator: etcd %s: %w", op, err)
	}
	return &Error{Kind: ErrUnavailable, Msg: "etcd " + op + ": " + err.Error()}
}

func (s *etcdStore) check() error {
	if s.closed.Load() {
		return fmt.Errorf("%w: store closed", ErrServerClosed)
	}
	return nil
}

// Get implements Store.
func (s *etcdStore) Get(ctx context.Context, key string) (KeyValue, error) {
	if err := s.check(); err != nil {
		return KeyValue{}, err
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return KeyValue{}, s.err("get", err)
	}
	if len(resp.Kvs) == 0 {
		return KeyValue{Key: key}, nil
	}
	kv := resp.Kvs[0]
	return KeyValue{Key: key, Value: kv.Value, ModRevision: kv.ModRevision}, nil
}

// List implements Store. One range request reads every key at one revision.
func (s *etcdStore) List(ctx context.Context, prefix string) ([]KeyValue, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, s.err("list", err)
	}
	out := make([]KeyValue, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = KeyValue{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision}
	}
	return out, nil
}

// Txn implements Store.
func (s *etcdStore) Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if err := checkTxn(conds, ops); err != nil {
		return 0, err
	}
	cmps := make([]clientv3.Cmp, len(conds))
	for i, c := range conds {
		rel := "="
		if c.NotEqual {
			rel = "!="
		}
		cmps[i] = clientv3.Compare(clientv3.ModRevision(c.Key), rel, c.ModRevision)
	}
	eops := make([]clientv3.Op, len(ops))
	for i, op := range ops {
		if op.Delete {
			eops[i] = clientv3.OpDelete(op.Key)
		} else {
			eops[i] = clientv3.OpPut(op.Key, string(op.Value))
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(eops...).Commit()
	if err != nil {
		return 0, s.err("txn", err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%w: a condition of the transaction failed", ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Close implements Store.
func (s *etcdStore) Close() error {
	if s.closed.Swap(true) || s.onClose == nil {
		return nil
	}
	return s.onClose()
}

// dialEtcd connects to an external etcd cluster and checks within timeout
// that it answers.
func dialEtcd(ctx context.Context, endpoints []string, timeout time.Duration, log *slog.Logger) (*clientv3.Client, error) {
	where := strings.Join(endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: timeout,
		Logger:      zap.New(&slogCore{log: log, min: zapcore.ErrorLevel}),
	})
	if err != nil {
		return nil, fmt.Errorf("aggregator: etcd at %s unreachable: %w", where, err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Get(pctx, keyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("aggregator: etcd at %s unreachable: %w", where, err)
	}
	return cli, nil
}

// embeddedEtcd is a single-node etcd run inside the aggregator process.
type embeddedEtcd struct {
	etcd    *embed.Etcd
	cli     *clientv3.Client
	closing *atomic.Bool // set at close: etcd's complaints about closed listeners are expected then
}

// startEmbeddedEtcd starts a single-node etcd keeping its data in dir, with
// client and peer URLs on free loopback ports, logging warnings and errors
// to log, and a client to it. It fails with a clear error when the server is
// not ready within timeout.
func startEmbeddedEtcd(ctx context.Context, dir string, timeout time.Duration, log *slog.Logger) (*embeddedEtcd, error) {
	// The free ports are found by binding and releasing them; another
	// process may take one in between, so a bind failure is retried.
	const attempts = 3
	var lastErr error
	for range attempts {
		e, err := startEtcdOnce(ctx, dir, timeout, log)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func startEtcdOnce(ctx context.Context, dir string, timeout time.Duration, log *slog.Logger) (*embeddedEtcd, error) {
	ports, err := freeLoopbackPorts(2)
	if err != nil {
		return nil, fmt.Errorf("aggregator: embedded etcd: %w", err)
	}
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", ports[0])}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", ports[1])}

	cfg := embed.NewConfig()
	cfg.Name = "xgpu-aggregator"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.MaxTxnOps = MaxTxnOps
	// Renewals rewrite lease keys all day; keep one hour of history.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.LogLevel = "warn"
	closing := new(atomic.Bool)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(&slogCore{log: log, min: zapcore.WarnLevel, closing: closing}))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("aggregator: embedded etcd in %s: %w", dir, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("aggregator: embedded etcd in %s failed to start: %w", dir, err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("aggregator: embedded etcd in %s not ready after %v", dir, timeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("aggregator: embedded etcd in %s: %w", dir, context.Cause(ctx))
	}
	cli, err := dialEtcd(ctx, []string{clientURL.String()}, timeout, log)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &embeddedEtcd{etcd: e, cli: cli, closing: closing}, nil
}

// clientURL returns the URL the embedded etcd serves clients on.
func (e *embeddedEtcd) clientURL() string { return e.etcd.Config().AdvertiseClientUrls[0].String() }

func (e *embeddedEtcd) close() error {
	e.closing.Store(true)
	err := closeClient(e.cli)
	e.etcd.Close()
	return err
}

// closeClient closes an etcd client; the context.Canceled it may report is
// its own shutdown, not a failure.
func closeClient(cli *clientv3.Client) error {
	if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("aggregator: close etcd client: %w", err)
	}
	return nil
}

// freeLoopbackPorts returns n distinct ports that were free on 127.0.0.1.
func freeLoopbackPorts(n int) ([]string, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		ls = append(ls, l)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	return ports, nil
}

// slogCore is a zapcore.Core that writes etcd's zap records to a
// slog.Logger, keeping only records at min or above. Warnings that are
// expected of a single-node etcd on loopback, and everything logged while
// it shuts down, are demoted to debug.
type slogCore struct {
	log     *slog.Logger
	min     zapcore.Level
	closing *atomic.Bool // may be nil
	fields  []zapcore.Field
}

// expectedWarnings are etcd warnings about choices made on purpose for an
// embedded single-node etcd on loopback.
var expectedWarnings = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{log: c.log, min: c.min, closing: c.closing, fields: append(slices.Clip(c.fields), fields...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slog.LevelError
	switch {
	case e.Level < zapcore.InfoLevel:
		level = slog.LevelDebug
	case e.Level < zapcore.WarnLevel:
		level = slog.LevelInfo
	case e.Level < zapcore.ErrorLevel:
		level = slog.LevelWarn
	}
	if expectedWarnings[e.Message] || (c.closing != nil && c.closing.Load()) {
		level = slog.LevelDebug
	}
	if !c.log.Enabled(context.Background(), level) {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	attrs = append(attrs, slog.String("component", "etcd"))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	c.log.LogAttrs(context.Background(), level, e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }
