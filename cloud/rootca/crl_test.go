package rootca

import (
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/cyphonic/cyphonic-go/pki"
)

func TestRevokeSignsIncreasingCRLs(t *testing.T) {
	ca := newCA(t, "root")
	if err := os.WriteFile(filepath.Join(ca.Dir(), RevokedFile), []byte("# old\nabc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, s := range []int64{5, 6, 6} {
		if err := ca.Revoke(big.NewInt(s)); err != nil {
			t.Fatal(err)
		}
		c, err := pki.LoadCRL(ca.Dir(), ca.Cert)
		want := uint64(min(i+1, 2))
		if err != nil || c.Number != want {
			t.Fatalf("after revoking %d: %+v, %v; want number %d", s, c, err, want)
		}
	}
	d, err := pki.LoadDenyList(ca.Dir())
	if err != nil || d.Len() != 3 || !d.Contains(big.NewInt(0xabc)) || !d.Contains(big.NewInt(6)) {
		t.Fatalf("deny list %v, %v", d.Serials(), err)
	}
}

// FuzzParseCRL: any input is a clear error or a list signed by the CA;
// never a panic.
func TestDenyListParse(t *testing.T) {
	d, err := parseDenyList([]byte("# comment\n\n  0A:ff \n0xbeef\nbeef\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Serials(); len(got) != 2 || got[0] != "aff" || got[1] != "beef" {
		t.Fatalf("serials %v", got)
	}
	for _, bad := range []string{"-1\n", "0\n", "xyz\n", string(make([]byte, 41)) + "\n"} {
		if _, err := parseDenyList([]byte(bad)); err == nil {
			t.Errorf("parseDenyList(%q) succeeded", bad)
		}
	}
	var nilList *pki.DenyList
	if nilList.Contains(big.NewInt(1)) || nilList.Len() != 0 {
		t.Fatal("nil deny list is not empty")
	}
}

func FuzzParseDenyList(f *testing.F) {
	f.Add([]byte("# x\naff\n0x1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDenyList(b)
		if err != nil {
			return
		}
		for _, s := range d.Serials() {
			if n, err := pki.ParseSerial(s); err != nil || pki.FormatSerial(n) != s {
				t.Fatalf("serial %q does not round-trip", s)
			}
		}
	})
}
