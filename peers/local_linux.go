//go:build linux

package peers

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/xgpu/xgpu/internal/wire"
)

// localLane is an attached local lane (see local.go).
type localLane struct {
	c        *Conn
	uc       *net.UnixConn
	mine     []byte // my ring: I write, the peer reads
	theirs   []byte // the peer's ring, mapped read-only
	slotSize int
	free     chan uint32 // free slots of my ring

	wmu sync.Mutex // serializes writes to uc

	// live guards the mappings: copies hold it for reading, and the
	// rings are unmapped under it once the Conn is dead.
	live sync.RWMutex
	gone bool

	mu    sync.Mutex // guards the maps
	waits map[uint64]*localWait
	xfers map[uint64]*localXfer
}

// OfferLocal offers the peer a local lane: it listens on a fresh abstract
// Unix socket and returns its name and a one-time token, which the caller
// sends the peer over the call stream for JoinLocal. The first connection
// that presents the token within Config.HandshakeTimeout (or before ctx
// ends) becomes the Conn's lane; the socket then closes. The lane is
// attached before the peer's JoinLocal returns, so transfers the peer
// starts after that use it at both ends.
func (c *Conn) OfferLocal(ctx context.Context) (name string, token []byte, err error) {
	if err := c.Err(); err != nil {
		return "", nil, err
	}
	if c.localLane() != nil {
		return "", nil, errors.New("peers: a local lane is already attached")
	}
	var rnd [16]byte
	token = make([]byte, localTokenSize)
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", nil, err
	}
	if _, err := rand.Read(token); err != nil {
		return "", nil, err
	}
	name = "@xgpu-lane-" + hex.EncodeToString(rnd[:])
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: name, Net: "unixpacket"})
	if err != nil {
		return "", nil, fmt.Errorf("peers: local lane: %w", err)
	}
	deadline := time.Now().Add(c.cfg.HandshakeTimeout)
	_ = ln.SetDeadline(deadline)
	c.wg.Go(func() {
		defer ln.Close()
		stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
		defer stop()
		stopConn := context.AfterFunc(c.ctx, func() { _ = ln.Close() })
		defer stopConn()
		for {
			uc, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			_ = uc.SetDeadline(deadline)
			if err := c.acceptLocal(uc, token); err != nil {
				_ = uc.Close()
				continue // a stranger, or a broken handshake: wait for the real one
			}
			return
		}
	})
	return name, token, nil
}

// acceptLocal runs the offering end's handshake on uc.
func (c *Conn) acceptLocal(uc *net.UnixConn, token []byte) error {
	tok, fd, err := readHandshake(uc, true)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(tok, token) != 1 {
		unix.Close(fd)
		return errors.New("peers: local lane: wrong token")
	}
	l, myFD, err := c.newLocalLane(uc, fd)
	if err != nil {
		return err
	}
	// Attach before answering: the peer starts transfers once it has the
	// answer.
	if err := c.attachLocal(l); err != nil {
		l.unmap()
		unix.Close(myFD)
		return err
	}
	err = writeHandshake(uc, nil, myFD)
	unix.Close(myFD)
	if err != nil {
		c.fail(fmt.Errorf("peers: local lane: %w", err))
		return err
	}
	_ = uc.SetDeadline(time.Time{})
	c.wg.Go(l.readLoop)
	return nil
}

// JoinLocal connects to a lane the peer offered (OfferLocal) and attaches
// it. It fails where the peer's socket cannot be reached (another host or
// network namespace); the Conn then keeps moving bulk data over QUIC.
func (c *Conn) JoinLocal(ctx context.Context, name string, token []byte) error {
	if err := c.Err(); err != nil {
		return err
	}
	if len(token) != localTokenSize || len(name) < 2 || name[0] != '@' {
		return errors.New("peers: local lane: malformed offer")
	}
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "unixpacket", name)
	if err != nil {
		return fmt.Errorf("peers: local lane: %w", err)
	}
	uc := conn.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetDeadline(dl)
	}
	fail := func(err error) error {
		_ = uc.Close()
		return fmt.Errorf("peers: local lane: %w", err)
	}
	myFD, mine, err := newRing()
	if err != nil {
		return fail(err)
	}
	err = writeHandshake(uc, token, myFD)
	unix.Close(myFD)
	if err != nil {
		unix.Munmap(mine)
		return fail(err)
	}
	_, fd, err := readHandshake(uc, false)
	if err != nil {
		unix.Munmap(mine)
		return fail(err)
	}
	theirs, err := mapPeerRing(fd)
	if err != nil {
		unix.Munmap(mine)
		return fail(err)
	}
	_ = uc.SetDeadline(time.Time{})
	l := c.wrapLane(uc, mine, theirs)
	if err := c.attachLocal(l); err != nil {
		l.unmap()
		return fail(err)
	}
	c.wg.Go(l.readLoop)
	return nil
}

// newLocalLane maps the peer's ring (fd, which it consumes) and makes
// this end's; it returns the lane and the fd of this end's ring.
func (c *Conn) newLocalLane(uc *net.UnixConn, fd int) (*localLane, int, error) {
	theirs, err := mapPeerRing(fd)
	if err != nil {
		return nil, -1, err
	}
	myFD, mine, err := newRing()
	if err != nil {
		unix.Munmap(theirs)
		return nil, -1, err
	}
	return c.wrapLane(uc, mine, theirs), myFD, nil
}

func (c *Conn) wrapLane(uc *net.UnixConn, mine, theirs []byte) *localLane {
	l := &localLane{
		c: c, uc: uc, mine: mine, theirs: theirs, slotSize: LocalSlotSize,
		free:  make(chan uint32, LocalSlots),
		waits: make(map[uint64]*localWait),
		xfers: make(map[uint64]*localXfer),
	}
	for i := range uint32(LocalSlots) {
		l.free <- i
	}
	return l
}

const ringSize = LocalSlots * LocalSlotSize

// newRing creates a ring in a memfd and maps it read-write.
func newRing() (int, []byte, error) {
	fd, err := unix.MemfdCreate("xgpu-lane", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, ringSize); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("ftruncate: %w", err)
	}
	b, err := unix.Mmap(fd, 0, ringSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("mmap: %w", err)
	}
	return fd, b, nil
}

// mapPeerRing maps the peer's ring read-only and closes fd.
func mapPeerRing(fd int) ([]byte, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Size != ringSize {
		return nil, fmt.Errorf("the peer's ring has %d bytes, want %d", st.Size, ringSize)
	}
	return unix.Mmap(fd, 0, ringSize, unix.PROT_READ, unix.MAP_SHARED)
}

// Handshake datagram: version u32, slots u32, slot size u32, then the
// token (joining end only); the ring's fd rides along as SCM_RIGHTS.
const localVersion = 1

func writeHandshake(uc *net.UnixConn, token []byte, fd int) error {
	b := make([]byte, 12, 12+len(token))
	binary.LittleEndian.PutUint32(b[0:], localVersion)
	binary.LittleEndian.PutUint32(b[4:], LocalSlots)
	binary.LittleEndian.PutUint32(b[8:], LocalSlotSize)
	b = append(b, token...)
	_, _, err := uc.WriteMsgUnix(b, unix.UnixRights(fd), nil)
	return err
}

func readHandshake(uc *net.UnixConn, wantToken bool) (token []byte, fd int, err error) {
	b := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(b, oob)
	if err != nil {
		return nil, -1, err
	}
	fds, ferr := parseRights(oob[:oobn])
	if ferr != nil || len(fds) != 1 {
		for _, f := range fds {
			unix.Close(f)
		}
		return nil, -1, errors.New("handshake without exactly one ring")
	}
	fd = fds[0]
	want := 12
	if wantToken {
		want += localTokenSize
	}
	if n != want || binary.LittleEndian.Uint32(b[0:]) != localVersion ||
		binary.LittleEndian.Uint32(b[4:]) != LocalSlots || binary.LittleEndian.Uint32(b[8:]) != LocalSlotSize {
		unix.Close(fd)
		return nil, -1, errors.New("handshake of another version or geometry")
	}
	return b[12:n], fd, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		f, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

func (l *localLane) unmap() {
	l.live.Lock()
	defer l.live.Unlock()
	if !l.gone {
		l.gone = true
		unix.Munmap(l.mine)
		unix.Munmap(l.theirs)
	}
}

// copyOut copies n bytes of the peer's slot into dst; false once the
// rings are gone.
func (l *localLane) copyOut(dst []byte, slot uint32) bool {
	l.live.RLock()
	defer l.live.RUnlock()
	if l.gone {
		return false
	}
	base := int(slot) * l.slotSize
	copy(dst, l.theirs[base:base+len(dst)])
	return true
}

// copyIn copies src into this end's slot; false once the rings are gone.
func (l *localLane) copyIn(slot uint32, src []byte) bool {
	l.live.RLock()
	defer l.live.RUnlock()
	if l.gone {
		return false
	}
	base := int(slot) * l.slotSize
	copy(l.mine[base:base+len(src)], src)
	return true
}

// write sends one message.
func (l *localLane) write(m localMsg) error {
	var b [msgSize]byte
	b[0] = m.typ
	binary.LittleEndian.PutUint32(b[4:], m.slot)
	binary.LittleEndian.PutUint64(b[8:], m.id)
	binary.LittleEndian.PutUint64(b[16:], m.total)
	binary.LittleEndian.PutUint64(b[24:], m.off)
	binary.LittleEndian.PutUint32(b[32:], m.n)
	binary.LittleEndian.PutUint32(b[36:], m.status)
	binary.LittleEndian.PutUint64(b[40:], m.sum)
	l.wmu.Lock()
	_, err := l.uc.Write(b[:])
	l.wmu.Unlock()
	if err != nil {
		l.c.fail(fmt.Errorf("peers: local lane: %w", err))
	}
	return err
}

// send is SendBulk over the lane.
func (l *localLane) send(ctx context.Context, id uint64, p []byte) error {
	w := &localWait{done: make(chan error, 1)}
	l.mu.Lock()
	if _, dup := l.waits[id]; dup {
		l.mu.Unlock()
		return fmt.Errorf("%w: %d", ErrBulkIDInUse, id)
	}
	l.waits[id] = w
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		delete(l.waits, id)
		l.mu.Unlock()
	}
	// The ways a send ends early: the Conn died, or the caller gave up,
	// which the receiver is told.
	lost := func() error {
		forget()
		return l.c.Err()
	}
	cancelled := func() error {
		forget()
		_ = l.write(localMsg{typ: msgCancel, id: id})
		return context.Cause(ctx)
	}
	total := uint64(len(p))
	if total == 0 {
		if err := l.write(localMsg{typ: msgData, slot: noSlot, id: id}); err != nil {
			return lost()
		}
	}
	for off := 0; off < len(p); off += l.slotSize {
		n := min(l.slotSize, len(p)-off)
		var slot uint32
		select {
		case slot = <-l.free:
		case <-ctx.Done():
			return cancelled()
		case <-l.c.ctx.Done():
			return lost()
		case err := <-w.done:
			// Refused part-way: stop sending.
			return err
		}
		if !l.copyIn(slot, p[off:off+n]) {
			return lost()
		}
		sum := xxhash.Sum64(p[off : off+n])
		if err := l.write(localMsg{typ: msgData, slot: slot, id: id, total: total, off: uint64(off), n: uint32(n), sum: sum}); err != nil {
			return lost()
		}
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return cancelled()
	case <-l.c.ctx.Done():
		return lost()
	}
}

// recv is RecvBulk over the lane.
func (l *localLane) recv(ctx context.Context, id uint64, dst []byte) error {
	l.mu.Lock()
	x := l.xferLocked(id)
	if x.registered || x.ended {
		l.mu.Unlock()
		return fmt.Errorf("%w: %d", ErrBulkIDInUse, id)
	}
	x.registered = true
	x.dst = dst
	x.remaining.Store(int64(len(dst)))
	if x.timer != nil {
		x.timer.Stop()
		x.timer = nil
	}
	pending := x.pending
	x.pending = nil
	l.mu.Unlock()
	for _, m := range pending {
		l.place(x, m)
	}
	select {
	case err := <-x.done:
		return err
	case <-ctx.Done():
		l.refuse(x, fmt.Errorf("peers: bulk transfer %d: receiver gave up: %w", id, context.Cause(ctx)))
		return <-x.done
	case <-l.c.ctx.Done():
		l.refuse(x, l.c.Err())
		return <-x.done
	}
}

// xferLocked returns incoming transfer id, creating it; l.mu is held.
func (l *localLane) xferLocked(id uint64) *localXfer {
	x := l.xfers[id]
	if x == nil {
		x = &localXfer{id: id, done: make(chan error, 1)}
		l.xfers[id] = x
	}
	return x
}

// place copies piece m into x's destination and gives its slot back.
func (l *localLane) place(x *localXfer, m localMsg) {
	x.copying.RLock()
	l.mu.Lock()
	ended := x.ended
	l.mu.Unlock()
	ok := !ended && m.total == uint64(len(x.dst)) && m.off <= m.total && uint64(m.n) <= m.total-m.off &&
		(m.n == 0 || (m.slot < LocalSlots && int(m.n) <= l.slotSize))
	var bad error
	if ok && m.n > 0 {
		piece := x.dst[m.off : m.off+uint64(m.n)]
		ok = l.copyOut(piece, m.slot)
		if got := xxhash.Sum64(piece); ok && got != m.sum {
			bad = &wire.ChecksumError{Offset: m.off, Len: m.n, Want: m.sum, Got: got}
		}
	}
	x.copying.RUnlock()
	if m.slot != noSlot {
		_ = l.write(localMsg{typ: msgAck, slot: m.slot})
	}
	switch {
	case ended:
	case bad != nil:
		l.refuse(x, fmt.Errorf("peers: bulk transfer %d: %w", x.id, bad))
	case !ok:
		l.refuse(x, fmt.Errorf("peers: bulk transfer %d: sender has %d bytes, receiver expects %d", x.id, m.total, len(x.dst)))
	case x.remaining.Add(-int64(m.n)) == 0:
		l.finish(x, nil)
	}
}

// finish ends x with err (nil: placed) and tells the sender.
func (l *localLane) finish(x *localXfer, err error) {
	l.mu.Lock()
	if x.ended {
		l.mu.Unlock()
		return
	}
	x.ended = true
	if x.timer != nil {
		x.timer.Stop()
		x.timer = nil
	}
	if err == nil {
		delete(l.xfers, x.id)
	} else {
		// Pieces the sender sent before it learns of the failure are
		// dropped at once (data), and the id stays taken a while, as
		// over QUIC.
		x.timer = time.AfterFunc(l.c.cfg.OrphanTimeout, func() {
			l.mu.Lock()
			if l.xfers[x.id] == x {
				delete(l.xfers, x.id)
			}
			l.mu.Unlock()
		})
	}
	pending := x.pending
	x.pending = nil
	l.mu.Unlock()
	for _, m := range pending {
		if m.slot != noSlot {
			_ = l.write(localMsg{typ: msgAck, slot: m.slot})
		}
	}
	status := uint32(0)
	if err != nil {
		status = 1
	}
	_ = l.write(localMsg{typ: msgDone, id: x.id, status: status})
	// No copy into dst runs past this point: the caller may reuse it.
	x.copying.Lock()
	x.copying.Unlock() //nolint:staticcheck // a barrier, not a critical section
	x.done <- err
}

func (l *localLane) refuse(x *localXfer, err error) { l.finish(x, err) }

// readLoop serves the peer's messages until the lane or the Conn breaks.
func (l *localLane) readLoop() {
	defer l.unmapWhenDone()
	stop := context.AfterFunc(l.c.ctx, func() { _ = l.uc.Close() })
	defer stop()
	var b [msgSize + 1]byte
	for {
		n, err := l.uc.Read(b[:])
		if err != nil || n != msgSize {
			if err == nil {
				err = fmt.Errorf("a message of %d bytes", n)
			}
			if l.c.Err() == nil {
				l.c.fail(fmt.Errorf("peers: local lane: %w", err))
			}
			return
		}
		m := localMsg{
			typ: b[0], slot: binary.LittleEndian.Uint32(b[4:]), id: binary.LittleEndian.Uint64(b[8:]),
			total: binary.LittleEndian.Uint64(b[16:]), off: binary.LittleEndian.Uint64(b[24:]),
			n: binary.LittleEndian.Uint32(b[32:]), status: binary.LittleEndian.Uint32(b[36:]),
			sum: binary.LittleEndian.Uint64(b[40:]),
		}
		switch m.typ {
		case msgData:
			l.data(m)
		case msgAck:
			if m.slot >= LocalSlots {
				l.c.fail(errors.New("peers: local lane: ack of an unknown slot"))
				return
			}
			select {
			case l.free <- m.slot:
			default:
				l.c.fail(errors.New("peers: local lane: a slot acknowledged twice"))
				return
			}
		case msgDone:
			l.mu.Lock()
			w := l.waits[m.id]
			delete(l.waits, m.id)
			l.mu.Unlock()
			if w != nil {
				if m.status == 0 {
					w.done <- nil
				} else {
					w.done <- &BulkError{ID: m.id, Code: BulkRefused, Msg: errLocalRefused.Error()}
				}
			}
		case msgCancel:
			l.mu.Lock()
			x := l.xfers[m.id]
			l.mu.Unlock()
			if x != nil {
				l.finish(x, fmt.Errorf("peers: bulk transfer %d: the sender gave up", m.id))
			}
		default:
			l.c.fail(fmt.Errorf("peers: local lane: message type %d", m.typ))
			return
		}
	}
}

// data handles a DATA message: placed at once if its RecvBulk waits,
// kept (with its slot) until then otherwise.
func (l *localLane) data(m localMsg) {
	l.mu.Lock()
	x := l.xferLocked(m.id)
	if x.ended {
		l.mu.Unlock()
		if m.slot != noSlot {
			_ = l.write(localMsg{typ: msgAck, slot: m.slot})
		}
		return
	}
	if !x.registered {
		x.pending = append(x.pending, m)
		if x.timer == nil {
			x.timer = time.AfterFunc(l.c.cfg.OrphanTimeout, func() {
				l.finish(x, fmt.Errorf("peers: bulk transfer %d: no receiver within %v", x.id, l.c.cfg.OrphanTimeout))
			})
		}
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.place(x, m)
}

// unmapWhenDone unmaps the rings once the Conn is dead (copies still
// running finish first: they hold live).
func (l *localLane) unmapWhenDone() {
	<-l.c.ctx.Done()
	l.unmap()
}
