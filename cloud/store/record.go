package store

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/vmihailenco/msgpack/v5"
)

// Records are msgpack maps with short keys: unknown keys are ignored and
// missing ones read as zero, so a newer cloud can add fields while an older
// one still reads the rest. Addresses are kept in text form so a Redis
// operator can read them. Encoded by reflection; decoded by
// record.DecodeMsgpack (recorddec.go: a tunnel setup reads two records),
// which FuzzRecordDecoders holds to the reflective reading.
type record struct {
	FQDN       string         `msgpack:"f"`
	VIP6       string         `msgpack:"v6,omitempty"`
	VIP4       string         `msgpack:"v4,omitempty"`
	CertSerial string         `msgpack:"cs,omitempty"`
	CertExpiry int64          `msgpack:"ce,omitempty"` // Unix nanoseconds
	HomeNMS    string         `msgpack:"nms,omitempty"`
	Updated    int64          `msgpack:"u,omitempty"` // Unix nanoseconds
	Observed4  string         `msgpack:"o4,omitempty"`
	Observed6  string         `msgpack:"o6,omitempty"`
	Locals     []string       `msgpack:"l,omitempty"`
	NAT4       uint8          `msgpack:"n4,omitempty"`
	NAT6       uint8          `msgpack:"n6,omitempty"`
	HasIPv4    bool           `msgpack:"h4,omitempty"`
	HasIPv6    bool           `msgpack:"h6,omitempty"`
	Session    *sessionRecord `msgpack:"s,omitempty"`
}

type sessionRecord struct {
	ID          uint32 `msgpack:"id"`
	NodeToCloud []byte `msgpack:"nc"`
	CloudToNode []byte `msgpack:"cn"`
	Expires     int64  `msgpack:"e,omitempty"` // Unix nanoseconds
}

// Bounds on what a record may hold; they keep a corrupt or hostile entry
// from costing more than a bad read.
const (
	maxRecordLen = 16 << 10
	maxLocals    = 32
	maxNMSIDLen  = 255
)

// checkNode validates a record before it is written.
func checkNode(n *Node) error {
	if err := pki.ValidateFQDN(n.FQDN); err != nil {
		return fmt.Errorf("store: node %q: %w: %w", n.FQDN, ErrInvalidNode, err)
	}
	if len(n.Locator.Locals) > maxLocals || len(n.HomeNMS) > maxNMSIDLen || len(n.CertSerial) > 64 {
		return fmt.Errorf("store: node %q: %w: field too long", n.FQDN, ErrInvalidNode)
	}
	if n.VIP6.IsValid() && !n.VIP6.Is6() || n.VIP4.IsValid() && !n.VIP4.Is4() {
		return fmt.Errorf("store: node %q: %w: VIPs of the wrong family", n.FQDN, ErrInvalidNode)
	}
	return nil
}

// checkLocatorUpdate validates what UpdateLocator would write, by the same
// rules as a whole record.
func checkLocatorUpdate(fqdn string, u *LocatorUpdate) error {
	n := Node{FQDN: fqdn}
	u.apply(&n)
	return checkNode(&n)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func addrPortString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func encodeNode(n *Node) ([]byte, error) {
	r := record{
		FQDN: n.FQDN, VIP6: addrString(n.VIP6), VIP4: addrString(n.VIP4),
		CertSerial: n.CertSerial, CertExpiry: unixNano(n.CertNotAfter), HomeNMS: n.HomeNMS, Updated: unixNano(n.Updated),
		Observed4: addrPortString(n.Locator.Observed4), Observed6: addrPortString(n.Locator.Observed6),
		NAT4: uint8(n.Locator.NAT4), NAT6: uint8(n.Locator.NAT6), // one byte each on disk
		HasIPv4: n.Locator.HasIPv4, HasIPv6: n.Locator.HasIPv6,
	}
	for _, l := range n.Locator.Locals {
		r.Locals = append(r.Locals, l.String())
	}
	if n.Session.ID != 0 {
		r.Session = &sessionRecord{
			ID:          n.Session.ID,
			NodeToCloud: n.Session.NodeToCloud[:],
			CloudToNode: n.Session.CloudToNode[:],
			Expires:     unixNano(n.Session.Expires),
		}
	}
	b, err := msgpack.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("store: encode %q: %w", n.FQDN, err)
	}
	return b, nil
}

// decodeNode reads a record. It never trusts the bytes: a store shared over
// the network may hold anything.
// recordDecoder is a msgpack decoder with the reader it reads from.
type recordDecoder struct {
	r bytes.Reader
	d *msgpack.Decoder
}

var recordDecoders = sync.Pool{New: func() any {
	rd := &recordDecoder{}
	rd.d = msgpack.NewDecoder(&rd.r)
	return rd
}}

func decodeNode(b []byte) (Node, error) {
	if len(b) > maxRecordLen {
		return Node{}, fmt.Errorf("store: record of %d bytes: %w", len(b), ErrInvalidNode)
	}
	var r record
	// A pooled decoder: a new one per read was a fifth of what a record
	// read allocates, and a tunnel setup reads two (issue 14). Pooled with
	// its reader, which was one more allocation per read.
	rd := recordDecoders.Get().(*recordDecoder)
	rd.r.Reset(b)
	rd.d.Reset(&rd.r)
	err := rd.d.Decode(&r)
	rd.r.Reset(nil) // keep no reference to the record
	recordDecoders.Put(rd)
	if err != nil {
		return Node{}, fmt.Errorf("store: decode record: %w: %w", ErrInvalidNode, err)
	}
	n := Node{
		FQDN: r.FQDN, CertSerial: r.CertSerial, CertNotAfter: fromUnixNano(r.CertExpiry), HomeNMS: r.HomeNMS, Updated: fromUnixNano(r.Updated),
		Locator: Locator{NAT4: messages.NATType(r.NAT4), NAT6: messages.NATType(r.NAT6), HasIPv4: r.HasIPv4, HasIPv6: r.HasIPv6},
	}
	parse := func(s string, dst *netip.Addr) {
		if s != "" && err == nil {
			*dst, err = netip.ParseAddr(s)
		}
	}
	parseAP := func(s string, dst *netip.AddrPort) {
		if s != "" && err == nil {
			*dst, err = netip.ParseAddrPort(s)
		}
	}
	parse(r.VIP6, &n.VIP6)
	parse(r.VIP4, &n.VIP4)
	parseAP(r.Observed4, &n.Locator.Observed4)
	parseAP(r.Observed6, &n.Locator.Observed6)
	if len(r.Locals) > maxLocals {
		return Node{}, fmt.Errorf("store: record %q: %w: %d locals", r.FQDN, ErrInvalidNode, len(r.Locals))
	}
	if len(r.Locals) > 0 {
		n.Locator.Locals = make([]netip.AddrPort, len(r.Locals))
		for i, l := range r.Locals {
			parseAP(l, &n.Locator.Locals[i])
		}
	}
	if err != nil {
		return Node{}, fmt.Errorf("store: record %q: %w: %w", r.FQDN, ErrInvalidNode, err)
	}
	if s := r.Session; s != nil {
		if s.ID == 0 || len(s.NodeToCloud) != 32 || len(s.CloudToNode) != 32 {
			return Node{}, fmt.Errorf("store: record %q: %w: malformed session", r.FQDN, ErrInvalidNode)
		}
		n.Session = Session{
			ID: s.ID, NodeToCloud: [32]byte(s.NodeToCloud), CloudToNode: [32]byte(s.CloudToNode),
			Expires: fromUnixNano(s.Expires),
		}
	}
	if err := checkNode(&n); err != nil {
		return Node{}, err
	}
	return n, nil
}
