package store

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// reflectRecord is record without its DecodeMsgpack: what the reflective
// decoder (the format's reference, and what decoded records before) reads.
type reflectRecord record

func decodeBoth(b []byte) (fast, slow record, fastErr, slowErr error) {
	fastErr = msgpack.NewDecoder(bytes.NewReader(b)).Decode(&fast)
	var rr reflectRecord
	slowErr = msgpack.NewDecoder(bytes.NewReader(b)).Decode(&rr)
	return fast, record(rr), fastErr, slowErr
}

func recordSamples(t testing.TB) [][]byte {
	full := Node{
		FQDN: "alice.example", VIP6: netip.MustParseAddr("fd63:7970:686f::5"), VIP4: netip.MustParseAddr("100.64.0.5"),
		CertSerial: "ab", CertNotAfter: time.Unix(9, 10), HomeNMS: "nms-2", Updated: time.Unix(5, 6),
		Session: Session{ID: 3, NodeToCloud: [32]byte{1}, CloudToNode: [32]byte{2}, Expires: time.Unix(7, 8)},
		Locator: Locator{
			Observed4: netip.MustParseAddrPort("203.0.113.1:1"), Observed6: netip.MustParseAddrPort("[2001:db8::1]:7"),
			Locals: []netip.AddrPort{netip.MustParseAddrPort("[::1]:2"), netip.MustParseAddrPort("10.0.0.1:3")},
			NAT4:   3, NAT6: 1, HasIPv4: true, HasIPv6: true,
		},
	}
	var out [][]byte
	for _, n := range []Node{full, {FQDN: "bob.example"}, {FQDN: "carol.example", Session: Session{ID: 1 << 31}}} {
		b, err := encodeNode(&n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	// A newer cloud's record: an unknown key of each shape, and a nil value.
	extra := map[string]any{"f": "dave.example", "zz": []any{1, "x", map[string]any{"a": 1}}, "longer-unknown-key": 7,
		"v4": nil, "s": map[string]any{"id": 9, "nc": bytes.Repeat([]byte{1}, 32), "cn": bytes.Repeat([]byte{2}, 32), "new": true}}
	b, err := msgpack.Marshal(extra)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, b, []byte{0x80}, []byte{0xc0})
}

// TestRecordDecoderMatchesReflection: the hand-written decoder reads every
// sample (records of each shape, a newer cloud's unknown keys, nil) as the
// reflective decoder does.
func TestRecordDecoderMatchesReflection(t *testing.T) {
	for i, b := range recordSamples(t) {
		fast, slow, fe, se := decodeBoth(b)
		if (fe == nil) != (se == nil) || !reflect.DeepEqual(fast, slow) {
			t.Errorf("sample %d: hand-written %+v (%v), reflective %+v (%v)", i, fast, fe, slow, se)
		}
	}
}

// FuzzRecordDecoders: on any input the two decoders agree whenever both
// succeed, and the hand-written one accepts nothing the reflective one
// refuses.
func FuzzRecordDecoders(f *testing.F) {
	for _, b := range recordSamples(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxRecordLen {
			return
		}
		fast, slow, fe, se := decodeBoth(b)
		if fe == nil && se != nil {
			t.Fatalf("hand-written decoder accepts what the reflective refuses (%v): %+v", se, fast)
		}
		if fe == nil && se == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoders differ:\n hand-written %+v\n reflective   %+v", fast, slow)
		}
	})
}

// BenchmarkDecodeRecord: a full record (session, both mappings, two
// locals) by the hand-written decoder and by reflection.
func BenchmarkDecodeRecord(b *testing.B) {
	rec := recordSamples(b)[0]
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r record
			d := msgpack.GetDecoder()
			d.Reset(bytes.NewReader(rec))
			if err := d.Decode(&r); err != nil {
				b.Fatal(err)
			}
			msgpack.PutDecoder(d)
		}
	})
	b.Run("reflective", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r reflectRecord
			d := msgpack.GetDecoder()
			d.Reset(bytes.NewReader(rec))
			if err := d.Decode(&r); err != nil {
				b.Fatal(err)
			}
			msgpack.PutDecoder(d)
		}
	})
}
