package nms

import (
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/cloud/store"
)

// TestKnownMapping: a keepalive is answered without the store only from
// the mapping of its own family that the worker learnt in the current
// lease epoch from a job that ran alone.
func TestKnownMapping(t *testing.T) {
	a4 := netip.MustParseAddrPort("198.51.100.7:4000")
	b4 := netip.MustParseAddrPort("198.51.100.7:4001")
	a6 := netip.MustParseAddrPort("[2001:db8::7]:4000")
	loc := store.Locator{Observed4: a4}
	for _, tt := range []struct {
		name  string
		run   func(se *session)
		from  netip.AddrPort
		epoch uint64
		want  bool
	}{
		{"never learnt", func(se *session) {}, a4, 0, false},
		{"learnt", func(se *session) { se.jobQueued(); se.jobDone(loc, true, 0) }, a4, 0, true},
		{"new mapping", func(se *session) { se.jobQueued(); se.jobDone(loc, true, 0) }, b4, 0, false},
		{"other family unknown", func(se *session) { se.jobQueued(); se.jobDone(loc, true, 0) }, a6, 0, false},
		{"lease lapsed since", func(se *session) { se.jobQueued(); se.jobDone(loc, true, 0) }, a4, 1, false},
		{"job failed", func(se *session) { se.jobQueued(); se.jobDone(loc, false, 0) }, a4, 0, false},
		{"jobs overlapped", func(se *session) {
			se.jobQueued()
			se.jobQueued()
			se.jobDone(loc, true, 0)
			se.jobDone(loc, true, 0)
		}, a4, 0, false},
		{"alone again after an overlap", func(se *session) {
			se.jobQueued()
			se.jobQueued()
			se.jobDone(loc, true, 0)
			se.jobDone(loc, true, 0)
			se.jobQueued()
			se.jobDone(loc, true, 0)
		}, a4, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			se := &session{}
			tt.run(se)
			if got := se.knownMapping(tt.from, tt.epoch); got != tt.want {
				t.Fatalf("knownMapping(%v) = %v, want %v (%+v)", tt.from, got, tt.want, se)
			}
		})
	}
}
