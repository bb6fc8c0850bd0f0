package nodecmd

import "testing"

func TestMemProfileRate(t *testing.T) {
	for _, tc := range []struct {
		asked   bool
		godebug string
		rate    int
		set     bool
	}{
		{set: true}, // off by default
		{asked: true, rate: 512 << 10, set: true}, // --debug-memprofile
		{godebug: "memprofilerate=4096"},          // GODEBUG's rate stays
		{godebug: "madvdontneed=1, memprofilerate=1"},
		{godebug: "madvdontneed=1", set: true},
		{godebug: "memprofilerate_x=1", set: true},
		{asked: true, godebug: "memprofilerate=4096", rate: 512 << 10, set: true}, // the flag wins
	} {
		rate, set := memProfileRate(tc.asked, tc.godebug)
		if rate != tc.rate || set != tc.set {
			t.Errorf("memProfileRate(%v, %q) = %d, %v; want %d, %v", tc.asked, tc.godebug, rate, set, tc.rate, tc.set)
		}
	}
}
