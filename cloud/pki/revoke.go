package pki

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// RevokedFile is the deny list's file in a CA directory: one serial per
// line in lowercase hex; blank lines and lines starting with # are ignored.
const RevokedFile = "revoked.txt"

// maxSerialHex bounds a serial's length when parsing (RFC 5280: 20 octets).
const maxSerialHex = 40

// FormatSerial writes a serial as lowercase hex, the form in revoked.txt.
func FormatSerial(s *big.Int) string { return s.Text(16) }

// ParseSerial reads a serial in hex, with or without colons (as openssl
// prints them).
func ParseSerial(s string) (*big.Int, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	h = strings.TrimPrefix(h, "0x")
	if h == "" || len(h) > maxSerialHex {
		return nil, fmt.Errorf("pki: serial %q: want 1..%d hex digits", s, maxSerialHex)
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("pki: serial %q: not a positive hex number", s)
	}
	return n, nil
}

// DenyList is an immutable set of revoked serials. The zero value and nil
// are empty lists.
type DenyList struct {
	serials map[string]struct{}
}

// NewDenyList returns a deny list of the given serials.
func NewDenyList(serials ...*big.Int) *DenyList {
	d := &DenyList{serials: make(map[string]struct{}, len(serials))}
	for _, s := range serials {
		d.serials[FormatSerial(s)] = struct{}{}
	}
	return d
}

// Contains reports whether serial is revoked.
func (d *DenyList) Contains(serial *big.Int) bool {
	if d == nil || serial == nil {
		return false
	}
	_, ok := d.serials[FormatSerial(serial)]
	return ok
}

// Len is the number of revoked serials.
func (d *DenyList) Len() int {
	if d == nil {
		return 0
	}
	return len(d.serials)
}

// Serials lists the revoked serials in hex, sorted.
func (d *DenyList) Serials() []string {
	if d == nil {
		return nil
	}
	out := make([]string, 0, len(d.serials))
	for s := range d.serials {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func parseDenyList(b []byte) (*DenyList, error) {
	d := &DenyList{serials: map[string]struct{}{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		n, err := ParseSerial(t)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		d.serials[FormatSerial(n)] = struct{}{}
	}
	return d, sc.Err()
}

// LoadDenyList reads revoked.txt from a CA directory. A missing file is an
// empty list (nothing has been revoked yet).
func LoadDenyList(caDir string) (*DenyList, error) {
	p := filepath.Join(caDir, RevokedFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return NewDenyList(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: load deny list: %w", err)
	}
	d, err := parseDenyList(b)
	if err != nil {
		return nil, fmt.Errorf("pki: load deny list %s: %w", p, err)
	}
	return d, nil
}

// Revoke adds serial to the CA's deny list. The file is replaced
// atomically (write, fsync, rename) so a reader never sees half a list.
func (ca *CA) Revoke(serial *big.Int) error {
	if serial == nil || serial.Sign() <= 0 {
		return fmt.Errorf("pki: revoke: invalid serial")
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	d, err := LoadDenyList(ca.dir)
	if err != nil {
		return fmt.Errorf("pki: revoke %s: %w", FormatSerial(serial), err)
	}
	if d.Contains(serial) {
		return nil
	}
	var buf bytes.Buffer
	buf.WriteString("# CYPHONIC revoked certificate serials, one per line (hex)\n")
	for _, s := range append(d.Serials(), FormatSerial(serial)) {
		buf.WriteString(s)
		buf.WriteByte('\n')
	}
	if err := replaceFile(filepath.Join(ca.dir, RevokedFile), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("pki: revoke %s: %w", FormatSerial(serial), err)
	}
	return nil
}

func replaceFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cherr := tmp.Chmod(mode)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, cherr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// DenyListFile is a live view of a CA directory's revoked.txt: Current
// rereads the file whenever it changed, so a revocation made by
// `cyphonic ca revoke` reaches a running AS or NMS without a restart.
// Checking costs one stat per call, cheap next to a login or a tunnel setup.
type DenyListFile struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	list *DenyList
	info fs.FileInfo // of the file list was read from; nil if it was missing
}

// NewDenyListFile watches caDir's revoked.txt. It fails if the file exists
// but cannot be read, so a service never starts with a broken deny list.
func NewDenyListFile(caDir string, log *slog.Logger) (*DenyListFile, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &DenyListFile{path: filepath.Join(caDir, RevokedFile), log: log}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Current returns the deny list as of the file's present contents. If the
// file changed but cannot be read or parsed, it logs and keeps the last good
// list: a typo in revoked.txt must not un-revoke everything or lock every
// node out.
func (f *DenyListFile) Current() *DenyList {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed() {
		if err := f.reload(); err != nil {
			f.log.Warn("pki: keeping previous deny list", "path", f.path, "err", err)
		}
	}
	return f.list
}

func (f *DenyListFile) changed() bool {
	info, err := os.Stat(f.path)
	if err != nil {
		return f.info != nil // it disappeared (or became unreadable)
	}
	// Revoke renames a new file into place, so SameFile catches it even
	// within one mtime tick; size and mtime catch edits in place.
	return f.info == nil || !os.SameFile(info, f.info) ||
		info.Size() != f.info.Size() || !info.ModTime().Equal(f.info.ModTime())
}

func (f *DenyListFile) reload() error {
	info, err := os.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		f.list, f.info = NewDenyList(), nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("pki: deny list: %w", err)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("pki: deny list: %w", err)
	}
	d, err := parseDenyList(b)
	if err != nil {
		// Remember the bad version so it is not re-parsed (and re-logged)
		// on every call, but keep serving the last good list.
		f.info = info
		return fmt.Errorf("pki: deny list %s: %w", f.path, err)
	}
	f.list, f.info = d, info
	return nil
}
