//go:build !linux

package peers

import "context"

// localLane is never attached where local lanes are unsupported.
type localLane struct{}

// OfferLocal fails: local lanes need Linux.
func (c *Conn) OfferLocal(ctx context.Context) (string, []byte, error) {
	return "", nil, ErrLocalUnsupported
}

// JoinLocal fails: local lanes need Linux.
func (c *Conn) JoinLocal(ctx context.Context, name string, token []byte) error {
	return ErrLocalUnsupported
}

func (l *localLane) send(ctx context.Context, id uint64, p []byte) error { return ErrLocalUnsupported }
func (l *localLane) recv(ctx context.Context, id uint64, dst []byte) error {
	return ErrLocalUnsupported
}
