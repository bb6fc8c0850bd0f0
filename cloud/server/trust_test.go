package server_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/cloudsim"
)

// noKeyBelow fails t if any file under dir holds the CA key: ca.key by
// name, or the CA's private key in any file.
func noKeyBelow(t *testing.T, dir string, caKey []byte) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Name() == rootca.KeyFile {
			t.Errorf("%s in the data directory", p)
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if strings.Contains(string(b), string(caKey)) {
				t.Errorf("%s holds the CA key", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// loginAndRegister logs a node with a certificate of ca in and registers it.
func loginAndRegister(t *testing.T, s *server.Server, ca *rootca.CA, fqdn string) {
	t.Helper()
	n := node(t, ca, fqdn, 2)
	if _, err := n.Login(s.AS.Addrs()[0], false); err != nil {
		t.Fatalf("login %s: %v", fqdn, err)
	}
	if _, err := n.Register(false); err != nil {
		t.Fatalf("register %s: %v", fqdn, err)
	}
}

// publishDenyList copies the CA's revoked.crl into the data directory, over
// what is there (the bootstrap's link), as the README tells an operator.
func publishDenyList(t *testing.T, caDir, data string) {
	t.Helper()
	list, err := os.ReadFile(filepath.Join(caDir, pki.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(server.TrustDir(data), pki.CRLFile)
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, list, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCloudRunsWithoutCAKey: a first start on an empty data directory
// creates the CA beside it (0700), not in it; with that CA taken offline
// (its directory moved away, ca.key gone from this machine's view, its deny
// list copied in) the cloud starts again on the same data directory and
// logs nodes in.
func TestCloudRunsWithoutCAKey(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	s, err := server.Start(context.Background(), server.Config{DataDir: data, Ephemeral: true, Listen: loopback})
	if err != nil {
		t.Fatal(err)
	}
	if s.CA == nil || s.CreatedCA != server.BootstrapCADir(data) {
		t.Fatalf("bootstrap made CA %v in %q, want one in %q", s.CA, s.CreatedCA, server.BootstrapCADir(data))
	}
	if fi, err := os.Stat(s.CreatedCA); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("CA dir %s: %v %v, want 0700", s.CreatedCA, fi.Mode(), err)
	}
	caKey, err := os.ReadFile(filepath.Join(s.CreatedCA, rootca.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	noKeyBelow(t, data, caKey)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	offline := filepath.Join(root, "offline-ca")
	if err := os.Rename(server.BootstrapCADir(data), offline); err != nil {
		t.Fatal(err)
	}
	ca, err := rootca.Load(offline)
	if err != nil {
		t.Fatal(err)
	}
	publishDenyList(t, offline, data)
	s, err = server.Start(context.Background(), server.Config{DataDir: data, Ephemeral: true, Listen: loopback})
	if err != nil {
		t.Fatalf("start with the CA key offline: %v", err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if s.CA != nil || s.CreatedCA != "" {
		t.Fatalf("second start holds CA %v (%q)", s.CA, s.CreatedCA)
	}
	if _, err := os.Stat(server.BootstrapCADir(data)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second start made a CA again: %v", err)
	}
	loginAndRegister(t, s, ca, "alice.example.cyphonic")
}

// TestCloudProvisioned: `cyphonic ca issue-service`'s way: the CA lives
// elsewhere, Provision fills the data directory, and the cloud runs on it
// without creating a CA. A ca.key left in the data directory by an older
// version (here one that is not even a key) is never read.
func TestCloudProvisioned(t *testing.T) {
	ca, err := rootca.Init(t.TempDir(), "offline CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if _, err := server.Provision(ca, data, []pki.Role{pki.RoleAS, pki.RoleNMS, pki.RoleTRS}, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Provision(ca, data, []pki.Role{pki.RoleAS}, time.Hour, false); !errors.Is(err, server.ErrIdentityExists) {
		t.Fatalf("provision over an identity: %v", err)
	}
	old, err := pki.LoadIdentity(filepath.Join(data, "nms"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Provision(ca, data, []pki.Role{pki.RoleNMS}, time.Hour, true); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if renewed, err := pki.LoadIdentity(filepath.Join(data, "nms")); err != nil || renewed.Cert.SerialNumber.Cmp(old.Cert.SerialNumber) == 0 {
		t.Fatalf("renewed identity %v, %v", renewed, err)
	}
	if err := os.WriteFile(filepath.Join(server.TrustDir(data), rootca.KeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := server.Start(context.Background(), server.Config{DataDir: data, Ephemeral: true, Listen: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if s.CA != nil || s.CreatedCA != "" {
		t.Fatalf("provisioned cloud holds CA %v (%q)", s.CA, s.CreatedCA)
	}
	loginAndRegister(t, s, ca, "bob.example.cyphonic")

	// Another CA's certificates do not go into this data directory.
	other, err := rootca.Init(t.TempDir(), "offline CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Provision(other, data, []pki.Role{pki.RoleAS}, time.Hour, true); err == nil {
		t.Fatal("provisioned another CA's certificate over this one's")
	}
}

// TestCloudRefusesMissingOrForeignCerts: a process does not start without
// the certificate of a service it runs, nor with one of another CA; and a
// bootstrap never opens a CA that exists already.
func TestCloudRefusesMissingOrForeignCerts(t *testing.T) {
	ca, err := rootca.Init(t.TempDir(), "offline CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rootca.Init(t.TempDir(), "offline CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if _, err := server.Provision(ca, data, []pki.Role{pki.RoleNMS}, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Start(context.Background(), server.Config{DataDir: data, Ephemeral: true, Listen: loopback}); err == nil ||
		!strings.Contains(err.Error(), "issue-service") {
		t.Fatalf("started without the AS's certificate: %v", err)
	}
	foreign, err := other.Issue(pki.RoleAS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteIdentity(filepath.Join(data, "as"), foreign); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Start(context.Background(), server.Config{DataDir: data, Ephemeral: true, Listen: loopback, Services: []string{"as", "nms"}}); !errors.Is(err, pki.ErrUnknownCA) {
		t.Fatalf("started with another CA's AS certificate: %v", err)
	}

	// An empty data directory beside an existing CA: no bootstrap.
	empty := filepath.Join(t.TempDir(), "data")
	if _, err := rootca.Init(server.BootstrapCADir(empty), "existing", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Start(context.Background(), server.Config{DataDir: empty, Ephemeral: true, Listen: loopback}); err == nil ||
		!strings.Contains(err.Error(), "issue-service") {
		t.Fatalf("bootstrap beside an existing CA: %v", err)
	}
}

// TestDenyListSurvivesMovingTheCA: a bootstrapped cloud follows its CA's
// revoked.txt through a link; moving the CA directory offline (as the
// README says to) while the cloud runs must not un-revoke anything, a
// restart with the link dangling is refused, and a copy of the list put
// in its place serves.
func TestDenyListSurvivesMovingTheCA(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	cfg := server.Config{DataDir: data, Ephemeral: true, Listen: loopback}
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ca := s.CA
	bad, err := ca.Issue(pki.RoleNode, "mallory.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(s *server.Server) bool {
		t.Helper()
		n, err := cloudsim.NewNodeWithIdentity(ca, bad)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		_, err = n.Login(s.AS.Addrs()[0], false)
		return err != nil
	}
	if err := ca.Revoke(bad.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if !refused(s) {
		t.Fatal("revoked node logged in through the link")
	}
	offline := filepath.Join(root, "offline-ca")
	if err := os.Rename(s.CreatedCA, offline); err != nil {
		t.Fatal(err)
	}
	// The operator's CA now lives (and issues, under its lock) offline.
	if ca, err = rootca.Load(offline); err != nil {
		t.Fatal(err)
	}
	if !refused(s) {
		t.Fatal("revoked node logged in once the CA moved away")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	if _, err := server.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "links to") {
		t.Fatalf("start with a dangling deny-list link: %v", err)
	}
	publishDenyList(t, offline, data)
	s, err = server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if !refused(s) {
		t.Fatal("revoked node logged in with the copied list")
	}
	loginAndRegister(t, s, ca, "alice.example.cyphonic")
}
