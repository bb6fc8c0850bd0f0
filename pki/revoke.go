package pki

import (
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

// ContainsSerial reports whether the serial written s (hex, as
// ParseSerial reads it) is revoked. A serial in FormatSerial's form, as
// the cloud's records hold them, is looked up as it is: no parse, no
// allocation (tunnel setups check two per request). An unparsable s is
// not revoked.
func (d *DenyList) ContainsSerial(s string) bool {
	if d == nil || len(d.serials) == 0 {
		return false
	}
	if _, ok := d.serials[s]; ok {
		return true
	}
	if canonicalSerial(s) {
		return false // the one form the set holds: not in it
	}
	n, err := ParseSerial(s)
	return err == nil && d.Contains(n)
}

// canonicalSerial reports whether s is FormatSerial's form of a positive
// serial: lower-case hex digits without a leading zero, at most
// maxSerialHex of them.
func canonicalSerial(s string) bool {
	if s == "" || len(s) > maxSerialHex || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
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

// LoadDenyList reads the CRL in a directory holding ca.crt and revoked.crl
// (a CA directory or a cloud data directory) and verifies it against that
// ca.crt. No CRL is an empty list.
func LoadDenyList(caDir string) (*DenyList, error) {
	root, err := LoadRoot(caDir)
	if err != nil {
		return nil, err
	}
	c, err := LoadCRL(caDir, root)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return NewDenyList(), nil
	}
	return c.DenyList(), nil
}

// ReplaceFile replaces path with data atomically (a temporary file renamed
// over it), so a reader sees the old content or the new, never a part.
func ReplaceFile(path string, data []byte, mode os.FileMode) error {
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

// DenyListFile is a live view of a directory's revoked.crl: Current
// rereads the file whenever it changed, so a list signed by
// `cyphonic ca revoke` and copied in reaches a running AS or NMS without a
// restart. Every version is verified against the directory's ca.crt and
// must be newer than the last (CRLState): a file replaced by an older or
// forged list is logged and ignored. Checking costs one stat per call.
type DenyListFile struct {
	path  string
	log   *slog.Logger
	state *CRLState

	mu   sync.Mutex
	info fs.FileInfo // of the file last read; nil if it was missing
}

// NewDenyListFile watches dir's revoked.crl, verified against dir's
// ca.crt. It fails if the file exists but is not a valid list, so a
// service never starts with a broken deny list.
func NewDenyListFile(dir string, log *slog.Logger) (*DenyListFile, error) {
	if log == nil {
		log = slog.Default()
	}
	root, err := LoadRoot(dir)
	if err != nil {
		return nil, err
	}
	f := &DenyListFile{path: filepath.Join(dir, CRLFile), log: log, state: NewCRLState(root)}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Current returns the deny list of the newest valid CRL seen.
func (f *DenyListFile) Current() *DenyList { return f.CRL().DenyList() }

// CRL returns the newest valid CRL seen (nil if none), rereading the file
// if it changed.
func (f *DenyListFile) CRL() *CRL {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed() {
		if err := f.reload(); err != nil {
			f.log.Warn("pki: keeping previous deny list", "path", f.path, "err", err)
		}
	}
	return f.state.Current()
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
		// A deleted list withdraws nothing: the last one stays.
		f.info = nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("pki: deny list: %w", err)
	}
	// Remember this version even if it is refused, so it is not re-read
	// (and re-logged) on every call.
	f.info = info
	b, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("pki: deny list: %w", err)
	}
	if _, err := f.state.Offer(b); err != nil {
		return fmt.Errorf("pki: deny list %s: %w", f.path, err)
	}
	return nil
}
