package rootca

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/pki"
)

// TestIssueAllocatesVIPs: the CA gives every node its own VIP pair, keeps a
// node's pair across reissues and across reopening the CA directory, and
// Verify reports the pair the certificate binds.
func TestIssueAllocatesVIPs(t *testing.T) {
	ca := newCA(t, "root")
	now := time.Now()
	seen := map[netip.Addr]string{}
	byName := map[string]*pki.Identity{}
	for _, name := range []string{"alice.example", "bob.example", "carol.example"} {
		id := mustIssue(t, ca, pki.RoleNode, name, now, now.Add(time.Hour))
		for _, a := range []netip.Addr{id.VIP6, id.VIP4} {
			if other, dup := seen[a]; dup {
				t.Fatalf("%s and %s share VIP %s", other, name, a)
			}
			seen[a] = name
		}
		if !pki.DefaultVIP6.Contains(id.VIP6) || !pki.DefaultVIP4.Contains(id.VIP4) {
			t.Fatalf("%s: VIPs %s %s outside the overlay prefixes", name, id.VIP6, id.VIP4)
		}
		byName[name] = id
	}
	again, err := Load(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	re := mustIssue(t, again, pki.RoleNode, "bob.example", now, now.Add(time.Hour))
	if b := byName["bob.example"]; re.VIP6 != b.VIP6 || re.VIP4 != b.VIP4 {
		t.Fatalf("reissued bob: VIPs %s %s, first issue %s %s", re.VIP6, re.VIP4, b.VIP6, b.VIP4)
	}
	dave := mustIssue(t, again, pki.RoleNode, "dave.example", now, now.Add(time.Hour))
	if _, dup := seen[dave.VIP4]; dup {
		t.Fatalf("dave got a VIP already issued: %s", dave.VIP4)
	}
	v, _ := pki.NewVerifier(ca.Cert, pki.RoleNode, pki.RoleAS)
	p, err := v.Verify(re.CertDER, "bob.example", now)
	if err != nil || p.VIP6 != re.VIP6 || p.VIP4 != re.VIP4 {
		t.Fatalf("Verify: %+v, %v", p, err)
	}
	as := mustIssue(t, ca, pki.RoleAS, "", now, now.Add(time.Hour))
	if p, err := v.Verify(as.CertDER, "", now); err != nil || p.VIP4.IsValid() || p.VIP6.IsValid() {
		t.Fatalf("service: %+v, %v", p, err)
	}
}

// TestConcurrentIssuersNeverShareVIPs: several handles on one CA directory
// (as several `cyphonic ca issue` processes would be) issue at once; every
// certificate gets its own VIPs.
func TestConcurrentIssuersNeverShareVIPs(t *testing.T) {
	ca := newCA(t, "root")
	const handles, each = 4, 8
	ids := make(chan *pki.Identity, handles*each)
	errs := make(chan error, handles*each)
	var wg sync.WaitGroup
	for h := range handles {
		c, err := Load(ca.Dir())
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range each {
				id, err := c.Issue(pki.RoleNode, fmt.Sprintf("n%d-%d.example", h, i), time.Hour)
				if err != nil {
					errs <- err
					return
				}
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for id := range ids {
		if other, dup := seen[id.VIP4]; dup {
			t.Fatalf("%s and %s share %s", other, id.FQDN, id.VIP4)
		}
		seen[id.VIP4] = id.FQDN
	}
	if len(seen) != handles*each {
		t.Fatalf("%d distinct VIPs, want %d", len(seen), handles*each)
	}
}
