package messages

import (
	"net/netip"
	"testing"
	"time"
)

func BenchmarkDataHeaderPut(b *testing.B) {
	pkt := make([]byte, 1500)
	h := DataHeader{Type: TypeData, Receiver: 7}
	b.ReportAllocs()
	for i := range b.N {
		h.Counter = uint64(i)
		h.Put(pkt)
	}
}

func BenchmarkDataHeaderParse(b *testing.B) {
	pkt := make([]byte, 1500)
	DataHeader{Type: TypeData, Receiver: 7, Counter: 9}.Put(pkt)
	b.ReportAllocs()
	var sink uint64
	for range b.N {
		h, err := ParseDataHeader(pkt)
		if err != nil {
			b.Fatal(err)
		}
		sink += h.Counter
	}
	_ = sink
}

// BenchmarkEnvelopeEncode encodes a Register envelope whose body is already
// encoded (the Encode path).
func BenchmarkEnvelopeEncode(b *testing.B) {
	env, err := NewEnvelope(testID, "alice.example.cyphonic", time.Unix(1, 0), samples()[6])
	if err != nil {
		b.Fatal(err)
	}
	enc := NewEncoder()
	b.ReportAllocs()
	for range b.N {
		if _, err := enc.Encode(env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelopeEncodeMessage encodes envelope and body in one pass.
func BenchmarkEnvelopeEncodeMessage(b *testing.B) {
	for _, tc := range []struct {
		name string
		body Body
	}{
		{"KeepaliveAck", &KeepaliveAck{Observed: netip.MustParseAddrPort("[2001:db8::1]:41641")}},
		{"Register", samples()[6]},
		{"Path", samples()[12]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			enc := NewEncoder()
			b.ReportAllocs()
			for range b.N {
				if _, err := enc.EncodeMessage(testID, "nms", 1, tc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEnvelopeDecode(b *testing.B) {
	env, err := NewEnvelope(testID, "alice.example.cyphonic", time.Unix(1, 0), samples()[6])
	if err != nil {
		b.Fatal(err)
	}
	wire, err := Marshal(env)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Envelope", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := Unmarshal(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Envelope+Register", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			env, err := Unmarshal(wire)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := DecodeBody[Register](env); err != nil {
				b.Fatal(err)
			}
		}
	})
}
