package nms

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
)

func TestLeaseView(t *testing.T) {
	var v leaseView
	now := time.Now()
	if _, ok := v.get("a:1", now); ok {
		t.Fatal("hit on an empty view")
	}
	v.put("a:1", true, now)
	v.put("b:1", false, now)
	for _, tt := range []struct {
		home     string
		at       time.Time
		held, ok bool
	}{
		{"a:1", now, true, true},
		{"b:1", now.Add(leaseCacheFor), false, true},
		{"a:1", now.Add(leaseCacheFor + time.Millisecond), false, false}, // stale: ask the store
		{"c:1", now, false, false},
	} {
		if held, ok := v.get(tt.home, tt.at); held != tt.held || ok != tt.ok {
			t.Errorf("get(%s, +%v) = %v, %v; want %v, %v", tt.home, tt.at.Sub(now), held, ok, tt.held, tt.ok)
		}
	}
	// Homes come from store records: the view stays bounded whatever
	// they name.
	for i := range 3 * maxLeaseViews {
		v.put(fmt.Sprintf("h%d:1", i), true, now)
	}
	if n := len(v.seen); n > maxLeaseViews {
		t.Fatalf("%d entries, bound %d", n, maxLeaseViews)
	}
}

// leaseStore is a bbolt store with leases held in a map: the Redis
// store's Leases without a Redis server, for the plain logic below.
type leaseStore struct {
	store.Store
	held map[string]bool
	err  error
}

func (l *leaseStore) RenewLease(context.Context, string, time.Duration) error { return l.err }
func (l *leaseStore) LeaseHeld(_ context.Context, h string) (bool, error) {
	return l.held[h], l.err
}

func TestHomeDown(t *testing.T) {
	bolt := openStore(t)
	for _, tt := range []struct {
		name  string
		st    store.Store
		home  string
		want  bool
		alive map[string]bool
		err   error
	}{
		{"no leases (bbolt): never down", bolt, "other:1", false, nil, nil},
		{"this NMS", &leaseStore{Store: bolt}, "self:1", false, nil, nil},
		{"no home", &leaseStore{Store: bolt}, "", false, nil, nil},
		{"lease held", &leaseStore{Store: bolt}, "other:1", false, map[string]bool{"other:1": true}, nil},
		{"lease lapsed", &leaseStore{Store: bolt}, "other:1", true, map[string]bool{"third:1": true}, nil},
		{"store error: taken as up", &leaseStore{Store: bolt}, "other:1", false, nil, errors.New("redis down")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if l, ok := tt.st.(*leaseStore); ok {
				l.held, l.err = tt.alive, tt.err
			}
			s := &Service{cfg: Config{Store: tt.st, Home: "self:1"}}
			if got := s.homeDown(context.Background(), store.Node{HomeNMS: tt.home}); got != tt.want {
				t.Fatalf("homeDown = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAdoptNode: the store step of taking over a node whose home NMS is
// gone. Only a node still on the session read, with its home still the
// dead one, gets this NMS as its home; one that moved on to a live home is
// directed there; an offline one is not adopted.
func TestAdoptNode(t *testing.T) {
	bg := context.Background()
	const fqdn = "bob.example.cyphonic"
	base := func(home string, sid store.SessionID, expires time.Time) store.Node {
		vips := storetest.VIPs(fqdn)
		return store.Node{FQDN: fqdn, VIP6: vips[0], VIP4: vips[1], CertSerial: "01", HomeNMS: home,
			Session: store.Session{ID: sid, Expires: expires},
			Locator: store.Locator{Observed4: netip.MustParseAddrPort("198.51.100.9:4000"), HasIPv4: true},
			Updated: time.Now()}
	}
	soon := time.Now().Add(time.Hour)
	for _, tt := range []struct {
		name      string
		read, now store.Node // the record the request read, and the record now
		wantHome  string     // in the store afterwards
		moved     bool
		wantErr   error
	}{
		{"still on the dead home: adopted", base("dead:1", 7, soon), base("dead:1", 7, soon), "self:1", false, nil},
		{"registered at a live NMS since: directed there", base("dead:1", 7, soon), base("live:1", 8, soon), "live:1", true, nil},
		{"registered here since", base("dead:1", 7, soon), base("self:1", 8, soon), "self:1", true, nil},
		{"logged out", base("dead:1", 7, soon), base("dead:1", 0, soon), "dead:1", false, store.ErrNotFound},
		{"session expired", base("dead:1", 7, soon), base("dead:1", 7, time.Now().Add(-time.Second)), "dead:1", false, store.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := &leaseStore{Store: openStore(t), held: map[string]bool{"live:1": true, "self:1": true}}
			if err := st.PutNode(bg, tt.now); err != nil {
				t.Fatal(err)
			}
			s := &Service{cfg: Config{Store: st, Home: "self:1"}}
			got := s.adoptNode(bg, tt.read)
			if !errors.Is(got.err, tt.wantErr) || got.err != nil && tt.wantErr == nil || got.moved != tt.moved {
				t.Fatalf("adoptNode: moved %v err %v, want moved %v err %v", got.moved, got.err, tt.moved, tt.wantErr)
			}
			n, err := st.GetNode(bg, fqdn)
			if err != nil {
				t.Fatal(err)
			}
			if n.HomeNMS != tt.wantHome {
				t.Fatalf("home in the store %q, want %q", n.HomeNMS, tt.wantHome)
			}
			if got.err == nil && got.node.HomeNMS != tt.wantHome {
				t.Fatalf("adopted record names home %q, want %q", got.node.HomeNMS, tt.wantHome)
			}
		})
	}
}
