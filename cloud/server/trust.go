package server

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/pki"
)

// A cloud data directory holds no CA key:
//
//	DataDir/ca/ca.crt       the overlay's root certificate, the trust anchor
//	DataDir/ca/revoked.crl  the CA-signed deny list the services follow
//	DataDir/as/, nms/, trs/ the services' identities (pki.WriteIdentity)
//	DataDir/registry.db     the bbolt store, unless the store is elsewhere
//
// `cyphonic ca issue-service` (Provision) fills it from a CA kept elsewhere.
// Only a first start on an empty data directory creates a CA itself, and it
// puts that CA beside the data directory (BootstrapCADir), never in it.

// TrustDir is the data directory's ca/ subdirectory: the root certificate
// and the deny list, never a key.
func TrustDir(dataDir string) string { return filepath.Join(dataDir, "ca") }

// BootstrapCADir is where a first start on an empty data directory creates
// the overlay CA: a sibling of the data directory ("cyphonic-data" →
// "cyphonic-data-ca"), so the key is outside what the cloud serves from and
// can be moved offline as one directory.
func BootstrapCADir(dataDir string) string { return filepath.Clean(dataDir) + "-ca" }

// ServiceValidity is how long Provision's certificates are valid by default.
const ServiceValidity = 365 * 24 * time.Hour

// renewWarning: a service certificate closer than this to its expiry makes
// Start warn (the cloud cannot renew it: it has no CA key).
const renewWarning = 30 * 24 * time.Hour

// ErrIdentityExists: Provision found an identity it was not told to replace.
var ErrIdentityExists = errors.New("service identity exists")

// Provision prepares dataDir for a cloud process under ca: it writes the
// root certificate into TrustDir(dataDir) (which must hold this CA's or
// none) and issues a certificate for each of roles (cloud services) into
// dataDir/<role>, valid for validity. An existing identity is an error
// unless replace is set; then it is swapped for the new one. Only `cyphonic
// ca` and a bootstrap (see Start) call it: it is the one place a CA key
// meets a data directory.
func Provision(ca *rootca.CA, dataDir string, roles []pki.Role, validity time.Duration, replace bool) ([]*pki.Identity, error) {
	trust := TrustDir(dataDir)
	switch root, err := pki.LoadRoot(trust); {
	case errors.Is(err, fs.ErrNotExist):
		if err := pki.WriteRoot(trust, ca.Cert); err != nil {
			return nil, fmt.Errorf("server: provision %s: %w", dataDir, err)
		}
	case err != nil:
		return nil, fmt.Errorf("server: provision %s: %w", dataDir, err)
	case !bytes.Equal(root.Raw, ca.Cert.Raw):
		return nil, fmt.Errorf("server: provision %s: its %s is another CA's (%q), not %q",
			dataDir, filepath.Join(trust, pki.CACertFile), root.Subject.CommonName, ca.Cert.Subject.CommonName)
	}
	var out []*pki.Identity
	for _, role := range roles {
		if !role.IsService() {
			return nil, fmt.Errorf("server: provision: %s is not a cloud service", role)
		}
		dir := filepath.Join(dataDir, role.String())
		exists := fileExists(filepath.Join(dir, pki.CertFile))
		if exists && !replace {
			return nil, fmt.Errorf("server: provision %s: %w", dir, ErrIdentityExists)
		}
		id, err := ca.Issue(role, "", validity)
		if err != nil {
			return nil, err
		}
		if err := writeIdentityDir(dir, id, ca.Cert); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// writeIdentityDir writes id (and the root, as `ca issue` does) into a
// fresh directory beside dir and renames it into place, replacing dir: a
// crash leaves the old identity or the new one, never half of each.
func writeIdentityDir(dir string, id *pki.Identity, root *x509.Certificate) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("server: identity %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".new-")
	if err != nil {
		return fmt.Errorf("server: identity %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp) // gone after the rename; cleans up a failure
	// MkdirTemp made it; WriteIdentity wants to make it itself (0700).
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("server: identity %s: %w", dir, err)
	}
	if err := pki.WriteIdentity(tmp, id); err != nil {
		return err
	}
	if err := pki.WriteRoot(tmp, root); err != nil {
		return err
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("server: identity %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.Rename(old, dir)
		return fmt.Errorf("server: identity %s: %w", dir, err)
	}
	return os.RemoveAll(old)
}

// trust is what a cloud process holds of the PKI: the root certificate and
// its services' identities. No CA key.
type trust struct {
	root *x509.Certificate
	ids  map[pki.Role]*pki.Identity
	// created is the directory of a CA this start made (bootstrap), "" when
	// the data directory was provisioned already.
	created string
	ca      *rootca.CA // that CA, for tests and the demo; nil when not created
}

// loadTrust reads dataDir's root and the identities of roles, after
// bootstrapping an empty dataDir (see Start). It never opens an existing
// ca.key.
func loadTrust(dataDir, bootstrapDir string, roles []pki.Role, log *slog.Logger) (*trust, error) {
	t := &trust{ids: map[pki.Role]*pki.Identity{}}
	dir := TrustDir(dataDir)
	if !fileExists(filepath.Join(dir, pki.CACertFile)) {
		ca, err := bootstrapCA(dataDir, bootstrapDir)
		if err != nil {
			return nil, err
		}
		t.created, t.ca = bootstrapDir, ca
		abs, _ := filepath.Abs(bootstrapDir)
		log.Warn("server: created a new overlay CA for an empty data directory; its private key is outside the data directory: keep it offline",
			"ca_dir", abs, "data_dir", dataDir)
	}
	if fileExists(filepath.Join(dir, rootca.KeyFile)) {
		log.Warn("server: the CA's private key is in the cloud's data directory; the cloud never reads it: move it offline",
			"path", filepath.Join(dir, rootca.KeyFile))
	}
	root, err := pki.LoadRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	t.root = root
	now := time.Now()
	for _, role := range roles {
		idDir := filepath.Join(dataDir, role.String())
		hint := fmt.Sprintf("issue it with 'cyphonic ca issue-service --dir CA_DIR --data %s --services %s'", dataDir, role)
		id, err := pki.LoadIdentity(idDir)
		if err != nil {
			return nil, fmt.Errorf("server: %s certificate: %w (%s)", role, err, hint)
		}
		v, err := pki.NewVerifier(root, role)
		if err != nil {
			return nil, err
		}
		if _, err := v.Verify(id.CertDER, "", now); err != nil {
			return nil, fmt.Errorf("server: %s certificate in %s: %w (%s --renew)", role, idDir, err, hint)
		}
		if left := id.Cert.NotAfter.Sub(now); left < renewWarning {
			log.Warn("server: service certificate expires soon; renew it with 'cyphonic ca issue-service --renew'",
				"role", role.String(), "not_after", id.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
		t.ids[role] = id
	}
	return t, nil
}

// bootstrapCA makes the CA of a first start on an empty data directory in
// caDir (outside dataDir), issues all three services' certificates into
// dataDir, and makes the data directory's revoked.crl follow the CA's, so
// `cyphonic ca revoke` reaches this cloud as it did when both lived in one
// directory. It refuses to use a CA that exists already: a cloud process
// never opens an existing CA key; `cyphonic ca issue-service` does that.
func bootstrapCA(dataDir, caDir string) (*rootca.CA, error) {
	if fileExists(filepath.Join(caDir, pki.CACertFile)) || fileExists(filepath.Join(caDir, rootca.KeyFile)) {
		return nil, fmt.Errorf("server: %s has no %s, and a CA exists in %s; the cloud does not open an existing CA's key: "+
			"provision the data directory with 'cyphonic ca issue-service --dir %s --data %s'",
			dataDir, filepath.Join("ca", pki.CACertFile), caDir, caDir, dataDir)
	}
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: CA dir: %w", err)
	}
	if err := os.Chmod(caDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: CA dir: %w", err)
	}
	ca, err := rootca.Init(caDir, rootca.DefaultCAName, 10*365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if _, err := Provision(ca, dataDir, []pki.Role{pki.RoleAS, pki.RoleNMS, pki.RoleTRS}, ServiceValidity, true); err != nil {
		return nil, err
	}
	// A symlink, not a copy: revoked.crl is public, and Revoke replaces it
	// by rename, which the deny-list watcher sees through the link. The
	// target exists from now on, so a dangling link means the CA moved
	// (see openDenyList), never "nothing revoked yet".
	if err := ca.EnsureCRL(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	target, err := filepath.Abs(filepath.Join(caDir, pki.CRLFile))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	link := filepath.Join(TrustDir(dataDir), pki.CRLFile)
	if !fileExists(link) {
		if err := os.Symlink(target, link); err != nil {
			return nil, fmt.Errorf("server: deny list link: %w", err)
		}
	}
	return ca, nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// denyList is the data directory's deny list (pki.DenyListFile), guarded
// against a bootstrap's link gone dangling: moving the CA directory
// offline, as the README says to, must not empty the list and so un-revoke
// everything. A start with a dangling link is refused; a link that dangles
// while running keeps the last list.
//
// Readers (every tunnel setup, every login, every gateway handshake) load
// an atomic pointer: no file access and no lock. It is refreshed off their
// path: by a poll every denyListPoll (a list copied in by an operator, or
// written by `cyphonic ca revoke` in another process), and at once after
// this process's own CA signs a list (a bootstrapped cloud: rootca's
// OnCRL). Before, each read stat'ed the file three times under two
// process-wide locks: a sixth of a tunnel setup's CPU (issue 14).
type denyList struct {
	file *pki.DenyListFile
	link string
	log  *slog.Logger

	cur atomic.Pointer[pki.CRL] // nil: nothing was ever revoked

	mu     sync.Mutex // serialises refresh
	warned bool

	stop chan struct{}
	done chan struct{}
}

// denyListPoll is how often the deny list's file is checked for a new
// version: a revocation from outside this process reaches the AS, the
// gateway and tunnel setups within it (NMS's own poll, which ends
// sessions and pushes the list to nodes, adds its DenyListPoll).
const denyListPoll = 250 * time.Millisecond

// openDenyList opens dir's deny list and polls it every `every` until
// close.
func openDenyList(dir string, every time.Duration, log *slog.Logger) (*denyList, error) {
	link := filepath.Join(dir, pki.CRLFile)
	if dangling(link) {
		target, _ := os.Readlink(link)
		return nil, fmt.Errorf("server: %s links to %s, which is gone (the CA moved?): copy the CA's %s over the link",
			link, target, pki.CRLFile)
	}
	f, err := pki.NewDenyListFile(dir, log)
	if err != nil {
		return nil, err
	}
	d := &denyList{file: f, link: link, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	d.cur.Store(f.CRL())
	go d.poll(every)
	return d, nil
}

func (d *denyList) poll(every time.Duration) {
	defer close(d.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			d.refresh()
		case <-d.stop:
			return
		}
	}
}

// close ends the poll; a second call does nothing.
func (d *denyList) close() {
	d.mu.Lock()
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	d.mu.Unlock()
	<-d.done
}

// refresh rereads the file if it changed (pki.DenyListFile's stat) and
// publishes the list: pki.DenyListFile's, or the last one while the link
// dangles.
func (d *denyList) refresh() {
	d.mu.Lock()
	defer d.mu.Unlock()
	var cur *pki.CRL
	if !dangling(d.link) {
		cur = d.file.CRL()
	}
	if cur == nil || dangling(d.link) { // before or while reading
		if !d.warned && d.cur.Load() != nil {
			d.log.Warn("server: the deny list's link dangles (the CA moved?); keeping the last list: copy the CA's revoked.crl over it",
				"path", d.link)
			d.warned = true
		}
		return
	}
	d.warned = false
	if last := d.cur.Load(); last == nil || cur.Number > last.Number {
		d.cur.Store(cur)
	}
}

// CRL is the signed list now (what NMS hands the nodes), as of the last
// refresh. Nil: nothing was ever revoked.
func (d *denyList) CRL() *pki.CRL { return d.cur.Load() }

// Current is CRL's deny list.
func (d *denyList) Current() *pki.DenyList { return d.CRL().DenyList() }

// dangling reports whether p is a symlink whose target is missing.
func dangling(p string) bool {
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return false
	}
	_, err = os.Stat(p)
	return errors.Is(err, fs.ErrNotExist)
}
