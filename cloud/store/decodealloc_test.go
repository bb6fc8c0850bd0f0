package store

import (
	"net/netip"
	"testing"
	"time"
)

// TestDecodeNodeAllocs: reading a record allocates what the Node keeps
// (its strings, locals) and the address texts it parses, not a decoder or
// a reader per read (a tunnel setup reads two records). A full record is
// 12 allocations (13 with a reader per read).
func TestDecodeNodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	n := Node{FQDN: "alice.example.cyphonic", CertSerial: "1234567890abcdef", CertNotAfter: time.Now(), HomeNMS: "127.0.0.1:7402",
		VIP6: netip.MustParseAddr("fd00::1"), VIP4: netip.MustParseAddr("100.64.0.1"), Updated: time.Now(),
		Locator: Locator{Observed4: netip.MustParseAddrPort("198.51.100.7:4000"), Locals: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.2:4000")}}}
	b, err := encodeNode(&n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeNode(b); err != nil {
		t.Fatal(err)
	}
	got := testing.AllocsPerRun(200, func() { _, _ = decodeNode(b) })
	t.Logf("%v allocations per record read", got)
	if got > 12 {
		t.Fatalf("%v allocations per record read, want ≤ 12", got)
	}
}
