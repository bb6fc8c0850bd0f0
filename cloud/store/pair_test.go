package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
)

// plainStore hides a store's optional interfaces: GetNodePair's fallback.
type plainStore struct{ store.Store }

// TestGetNodePair: one read of two records answers as two GetNode calls
// would, for each of found and missing, in the bbolt store's transaction
// and in the fallback.
func TestGetNodePair(t *testing.T) {
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	bg := context.Background()
	for _, fqdn := range []string{"alice.example.cyphonic", "bob.example.cyphonic"} {
		vips := storetest.VIPs(fqdn)
		if err := bolt.PutNode(bg, store.Node{FQDN: fqdn, VIP6: vips[0], VIP4: vips[1], CertSerial: "9f3a0c", HomeNMS: "nms-1"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []struct {
		name string
		s    store.Store
	}{{"bolt", bolt}, {"fallback", plainStore{bolt}}} {
		for _, pair := range [][2]string{
			{"alice.example.cyphonic", "bob.example.cyphonic"},
			{"alice.example.cyphonic", "carol.example.cyphonic"},
			{"carol.example.cyphonic", "bob.example.cyphonic"},
			{"carol.example.cyphonic", "dave.example.cyphonic"},
		} {
			na, errA, nb, errB := store.GetNodePair(bg, st.s, pair[0], pair[1])
			for i, got := range []struct {
				n   store.Node
				err error
			}{{na, errA}, {nb, errB}} {
				want, wantErr := bolt.GetNode(bg, pair[i])
				if errors.Is(got.err, store.ErrNotFound) != errors.Is(wantErr, store.ErrNotFound) || (got.err == nil) != (wantErr == nil) {
					t.Errorf("%s %v: record %d: err %v, GetNode's %v", st.name, pair, i, got.err, wantErr)
				}
				if got.n.FQDN != want.FQDN || got.n.VIP4 != want.VIP4 || got.n.CertSerial != want.CertSerial || got.n.HomeNMS != want.HomeNMS {
					t.Errorf("%s %v: record %d: %+v, GetNode's %+v", st.name, pair, i, got.n, want)
				}
			}
		}
	}
}
