package store

import (
	"net/netip"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	n := Node{
		FQDN: "alice.example", VIP6: netip.MustParseAddr("fd63:7970:686f::5"), VIP4: netip.MustParseAddr("100.64.0.5"),
		CertSerial: "ab", CertNotAfter: time.Unix(9, 10), HomeNMS: "nms-2", Updated: time.Unix(5, 6),
		Session: Session{ID: 3, NodeToCloud: [32]byte{1}, CloudToNode: [32]byte{2}, Expires: time.Unix(7, 8)},
		Locator: Locator{
			Observed4: netip.MustParseAddrPort("203.0.113.1:1"), Locals: []netip.AddrPort{netip.MustParseAddrPort("[::1]:2")},
			NAT4: 3, HasIPv4: true,
		},
	}
	b, err := encodeNode(&n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeNode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.FQDN != n.FQDN || got.VIP6 != n.VIP6 || got.VIP4 != n.VIP4 || got.Session.ID != 3 ||
		got.Session.NodeToCloud != n.Session.NodeToCloud || !got.Session.Expires.Equal(n.Session.Expires) ||
		!got.Updated.Equal(n.Updated) || !got.CertNotAfter.Equal(n.CertNotAfter) || got.Locator.Observed4 != n.Locator.Observed4 ||
		len(got.Locator.Locals) != 1 || got.Locator.Locals[0] != n.Locator.Locals[0] || got.Locator.NAT4 != 3 {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, n)
	}
}

func FuzzDecodeNode(f *testing.F) {
	n := Node{FQDN: "alice.example", Session: Session{ID: 1}, Locator: Locator{Locals: []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:5")}}}
	b, _ := encodeNode(&n)
	f.Add(b)
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeNode(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same record.
		b2, err := encodeNode(&n)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		n2, err := decodeNode(b2)
		if err != nil || n2.FQDN != n.FQDN || n2.Session != n.Session || n2.VIP6 != n.VIP6 {
			t.Fatalf("re-decode differs: %+v vs %+v (%v)", n2, n, err)
		}
	})
}
