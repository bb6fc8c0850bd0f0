package netlab

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNth(t *testing.T) {
	tests := []struct {
		prefix string
		n      int
		want   string // empty: ErrAddressSpace
	}{
		{"198.51.100.0/24", 1, "198.51.100.1"},
		{"198.51.100.0/24", 254, "198.51.100.254"},
		{"198.51.100.0/24", 255, ""}, // broadcast
		{"198.51.100.0/24", 0, ""},   // network
		{"203.0.113.128/28", 14, "203.0.113.142"},
		{"203.0.113.128/28", 15, ""},
		{"2001:db8::/64", 1, "2001:db8::1"},
		{"2001:db8::/64", 300, "2001:db8::12c"},
		{"2001:db8:1::/64", 255, "2001:db8:1::ff"},
		{"10.1.0.0/16", 256, "10.1.1.0"},
	}
	for _, tt := range tests {
		got, err := nth(netip.MustParsePrefix(tt.prefix), tt.n)
		if tt.want == "" {
			if !errors.Is(err, ErrAddressSpace) {
				t.Errorf("nth(%s, %d) = %v, %v; want ErrAddressSpace", tt.prefix, tt.n, got, err)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(tt.want) {
			t.Errorf("nth(%s, %d) = %v, %v; want %s", tt.prefix, tt.n, got, err, tt.want)
		}
	}
}

func TestSiteLAN(t *testing.T) {
	tests := []struct {
		name          string
		index, routed int
		opts          SiteOpts
		v4, v6        string // empty: family absent
		wantErr       bool
	}{
		{"cone dual", 3, 0, SiteOpts{NAT: NATCone, IPv4: true, IPv6: true}, "10.3.0.0/24", "2001:db8:103::/64", false},
		{"symmetric nat66", 2, 0, SiteOpts{NAT: NATSymmetric, IPv4: true, IPv6: true, NAT66: true}, "10.2.0.0/24", "fd00:0:0:2::/64", false},
		{"nat66 without nat is routed", 4, 1, SiteOpts{IPv6: true, NAT66: true}, "", "2001:db8:104::/64", false},
		{"routed v4 first", 1, 1, SiteOpts{IPv4: true}, "203.0.113.128/28", "", false},
		{"routed v4 last", 9, 8, SiteOpts{IPv4: true}, "203.0.113.240/28", "", false},
		{"routed v4 exhausted", 10, 9, SiteOpts{IPv4: true}, "", "", true},
		{"index out of range", 256, 0, SiteOpts{NAT: NATCone, IPv4: true}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := siteLAN(tt.index, tt.routed, tt.opts)
			if tt.wantErr {
				if !errors.Is(err, ErrAddressSpace) {
					t.Fatalf("err = %v, want ErrAddressSpace", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			check := func(fam string, got netip.Prefix, want string) {
				if want == "" {
					if got.IsValid() {
						t.Errorf("%s = %s, want none", fam, got)
					}
					return
				}
				if got != netip.MustParsePrefix(want) {
					t.Errorf("%s = %s, want %s", fam, got, want)
				}
			}
			check("v4", l.v4, tt.v4)
			check("v6", l.v6, tt.v6)
		})
	}
}

// The plan must never hand out a public address outside the documentation
// ranges, whatever the site.
func TestPlanStaysInDocumentationRanges(t *testing.T) {
	allowed := []netip.Prefix{
		netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
	}
	ok := func(p netip.Prefix) bool {
		for _, a := range allowed {
			if a.Bits() <= p.Bits() && a.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	in := internetLAN()
	for _, p := range []netip.Prefix{in.v4, in.v4b, in.v6, in.v6b} {
		if !ok(p) {
			t.Errorf("internet prefix %s outside allowed ranges", p)
		}
	}
	for index := 1; index <= 255; index++ {
		for _, nat := range []NAT{NATNone, NATCone, NATSymmetric} {
			for _, nat66 := range []bool{false, true} {
				l, err := siteLAN(index, min(index, maxRouted4Sites), SiteOpts{NAT: nat, IPv4: true, IPv6: true, NAT66: nat66})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range []netip.Prefix{l.v4, l.v6} {
					if !ok(p) {
						t.Errorf("site %d %v: prefix %s outside allowed ranges", index, nat, p)
					}
				}
			}
		}
	}
}

func TestValidName(t *testing.T) {
	for name, valid := range map[string]bool{
		"a": true, "cloud": true, "node12": true, "abcdefgh": true,
		"": false, "abcdefghi": false, "1abc": false, "Abc": false, "a-b": false,
		"a/b": false, "inet": false, "a b": false,
	} {
		err := validName(name)
		if (err == nil) != valid {
			t.Errorf("validName(%q) = %v, want valid=%v", name, err, valid)
		}
		if err != nil && !errors.Is(err, ErrName) {
			t.Errorf("validName(%q) error %v is not ErrName", name, err)
		}
	}
	// The longest name must still fit IFNAMSIZ in every use.
	if n := len("cy0000-abcdefgh"); n > 15 {
		t.Errorf("longest namespace name has %d chars", n)
	}
	if !nsPattern.MatchString("cy0a1b-abcdefgh") || nsPattern.MatchString("cyzzzz-a") || nsPattern.MatchString("docker-a") {
		t.Error("nsPattern matches the wrong names")
	}
}

func TestNATRuleset(t *testing.T) {
	tests := []struct {
		name              string
		nat               NAT
		ipv4, ipv6, nat66 bool
		want, notWant     []string
	}{
		{"none", NATNone, true, true, true, nil, []string{"table"}},
		{"cone v4", NATCone, true, true, false,
			[]string{"table ip cytb_nat", `oifname "wan0" masquerade` + "\n", `iifname "wan0" meta l4proto udp ct state new drop`},
			[]string{"fully-random", "ip6"}},
		{"symmetric v4", NATSymmetric, true, false, false,
			[]string{"table ip cytb_nat", `oifname "wan0" masquerade fully-random`}, []string{"ip6", "chain input"}},
		{"masquerade v4", NATMasquerade, true, false, false,
			[]string{"table ip cytb_nat", `oifname "wan0" masquerade` + "\n"}, []string{"fully-random", "ip6", "chain input", "drop"}},
		{"cone nat66", NATCone, false, true, true,
			[]string{"table ip6 cytb_nat", "masquerade"}, []string{"table ip "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := natRuleset("wan0", tt.nat, tt.ipv4, tt.ipv6, tt.nat66)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("ruleset lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("ruleset has %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestImpairRuleset(t *testing.T) {
	for _, tt := range []struct {
		percent int
		rule    string
	}{{0, ""}, {-5, ""}, {30, "numgen random mod 100 < 30 drop"}, {99, "numgen random mod 100 < 99 drop"}, {150, "\t\tdrop\n"}} {
		got := impairRuleset(tt.percent)
		if !strings.HasPrefix(got, "add table inet cytb_impair\ndelete table inet cytb_impair\n") {
			t.Errorf("%d%%: does not replace the table:\n%s", tt.percent, got)
		}
		if tt.rule == "" && strings.Contains(got, "numgen") || tt.rule != "" && !strings.Contains(got, tt.rule) {
			t.Errorf("%d%%: want rule %q in:\n%s", tt.percent, tt.rule, got)
		}
	}
}

func TestEtcFiles(t *testing.T) {
	if got := string(resolvConf(nil)); !strings.HasPrefix(got, "nameserver 127.0.0.1\n") {
		t.Errorf("default resolv.conf = %q", got)
	}
	got := string(resolvConf([]netip.Addr{netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("fd00::53")}))
	if !strings.Contains(got, "nameserver 10.1.0.2\nnameserver fd00::53\n") {
		t.Errorf("resolv.conf = %q", got)
	}
	hosts := string(hostsFile("alice", map[string]netip.Addr{
		"zed.example": netip.MustParseAddr("2001:db8::9"), "bob.example": netip.MustParseAddr("10.1.0.3"),
	}))
	if !strings.Contains(hosts, "127.0.1.1\talice\n10.1.0.3\tbob.example\n2001:db8::9\tzed.example\n") {
		t.Errorf("hosts = %q", hosts)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, w := range []string{"abc", "defg", "hijkl"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := b.String(); got != "efghijkl" {
		t.Errorf("after small writes: %q", got)
	}
	_, _ = b.Write([]byte("0123456789"))
	if got := b.String(); got != "23456789" {
		t.Errorf("after a write larger than max: %q", got)
	}
}
