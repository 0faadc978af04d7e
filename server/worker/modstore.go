package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Module images are named by their SHA-256: the client sends the digest
// first (OpModuleHave) and the image only when no worker of the server
// holds it (OpModuleLoad). The name is a cryptographic digest, not a fast
// checksum, because images are shared by every session of the server: an
// image whose name could be forged would let one tenant plant code under
// the name of another's.

// digest is the SHA-256 of a module image.
type digest [sha256.Size]byte

func (d digest) String() string { return hex.EncodeToString(d[:]) }

// parseDigest parses 64 hex digits.
func parseDigest(s string) (digest, bool) {
	var d digest
	if len(s) != 2*len(d) {
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, false
	}
	return d, true
}

// MaxModuleImage is the largest module image a worker accepts.
const MaxModuleImage = 1 << 30

// errNotStored reports an image the store does not hold (or held damaged,
// and dropped).
var errNotStored = errors.New("worker: module image not in the store")

// moduleStore keeps module images in a directory shared by every worker of
// a server (Config.ModuleCacheDir), one file per image named by its
// digest. Files are written to a temporary name and renamed, so a reader
// never sees a partial image, and every read checks the digest, so a
// damaged or planted file is dropped rather than loaded. Workers are
// separate processes; the file system is their only shared state.
type moduleStore struct {
	dir string
}

// openModuleStore creates dir (mode 0700) if needed.
func openModuleStore(dir string) (*moduleStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker: module cache: %w", err)
	}
	return &moduleStore{dir: dir}, nil
}

func (s *moduleStore) path(d digest) string { return filepath.Join(s.dir, d.String()+".img") }

// get returns the image named d, checked against d.
func (s *moduleStore) get(d digest) ([]byte, error) {
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotStored
	}
	if err != nil {
		return nil, fmt.Errorf("worker: module cache: %w", err)
	}
	defer f.Close()
	img, err := io.ReadAll(io.LimitReader(f, MaxModuleImage+1))
	if err != nil {
		return nil, fmt.Errorf("worker: module cache: %w", err)
	}
	if len(img) > MaxModuleImage || sha256.Sum256(img) != d {
		// Damaged (a full disk, a hand edit) or planted: never load it.
		_ = os.Remove(s.path(d))
		return nil, errNotStored
	}
	return img, nil
}

// put stores img, whose digest is d; an image already stored is kept.
func (s *moduleStore) put(d digest, img []byte) error {
	dst := s.path(d)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	f, err := os.CreateTemp(s.dir, ".tmp-"+d.String()[:16]+"-*")
	if err != nil {
		return fmt.Errorf("worker: module cache: %w", err)
	}
	_, err = f.Write(img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("worker: module cache: %w", err)
	}
	return nil
}
