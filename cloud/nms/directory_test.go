package nms

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
)

// directoryStore is a LeaseDirectory whose live leases are a map.
type directoryStore struct {
	leaseStore
	live map[string]store.LeaseInfo
}

func (d *directoryStore) PublishLease(context.Context, string, store.LeaseInfo, time.Duration) error {
	return nil
}
func (d *directoryStore) LiveLeases(context.Context) (map[string]store.LeaseInfo, error) {
	return d.live, d.err
}

// TestOtherClouds: what the AS lists for a login is every other live
// process (not this one), in a stable order, at most maxOtherClouds; a
// failed read keeps the last list.
func TestOtherClouds(t *testing.T) {
	info := func(i int) store.LeaseInfo {
		return store.LeaseInfo{NMS: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 7400)}}
	}
	d := &directoryStore{live: map[string]store.LeaseInfo{"self:1": info(1), "c:1": info(3), "b:1": info(2)}}
	s := &Service{cfg: Config{Home: "self:1"}, log: slog.New(slog.DiscardHandler)}
	if got := s.OtherClouds(); got != nil {
		t.Fatalf("before any read: %v", got)
	}
	s.readDirectory(context.Background(), d)
	got := s.OtherClouds()
	if len(got) != 2 || got[0].NMS[0] != info(2).NMS[0] || got[1].NMS[0] != info(3).NMS[0] {
		t.Fatalf("other clouds %+v, want b's then c's", got)
	}
	d.err = fmt.Errorf("redis down")
	s.readDirectory(context.Background(), d)
	if got := s.OtherClouds(); len(got) != 2 {
		t.Fatalf("a failed read changed the list: %+v", got)
	}
	d.err, d.live = nil, map[string]store.LeaseInfo{}
	for i := range 3 * maxOtherClouds {
		d.live[fmt.Sprintf("p%02d:1", i)] = info(10 + i)
	}
	s.readDirectory(context.Background(), d)
	if got := s.OtherClouds(); len(got) != maxOtherClouds {
		t.Fatalf("%d other clouds listed, bound %d", len(got), maxOtherClouds)
	}
}
