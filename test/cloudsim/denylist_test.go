package cloudsim

import (
	"context"
	"crypto/rand"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// TestDenyListPushWindowed: a deny list of many chunks is pushed to a node
// a few chunks at a time (nms.denyWindow), the next going out only once
// one is acknowledged, rather than all of them at once with a delivery
// each (one actor per chunk per node before). A node that does not answer
// is sent no more than the window; once it answers, the whole list
// arrives.
func TestDenyListPushWindowed(t *testing.T) {
	const window = 4 // nms.denyWindow
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice := newNode(t, s, "alice.example.cyphonic")
	online(t, s, alice, messages.NATNone)

	serials := make([]*big.Int, 400) // ~17 B each in the CRL: several chunks
	for i := range serials {
		b := make([]byte, 16)
		rand.Read(b)
		serials[i] = new(big.Int).SetBytes(append([]byte{1}, b...))
	}
	if err := s.CA.Revoke(serials...); err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(filepath.Join(s.CA.Dir(), pki.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := pki.ParseCRL(der, s.CA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	chunks := len(messages.DenyListChunks(crl.Number, der))
	if chunks <= 2*window {
		t.Fatalf("deny list of %d chunks: want more than %d", chunks, 2*window)
	}
	// Until a retransmission arrives, everything NMS meant to send at
	// once has been sent.
	eventually(t, "a deny-list chunk retransmitted", func() bool {
		ids, _, copies := alice.DenyListChunks(crl.Number)
		return ids > 0 && copies > ids
	})
	if ids, _, _ := alice.DenyListChunks(crl.Number); ids != window {
		t.Fatalf("NMS sent %d of %d chunks before any was acknowledged, want %d", ids, chunks, window)
	}
	alice.AckDenyListsNow()
	eventually(t, "the whole deny list delivered", func() bool {
		_, offsets, _ := alice.DenyListChunks(crl.Number)
		return offsets == chunks
	})
	if ids, _, _ := alice.DenyListChunks(crl.Number); ids != chunks {
		t.Fatalf("%d chunk deliveries for %d chunks: one push, each chunk once", ids, chunks)
	}
}
