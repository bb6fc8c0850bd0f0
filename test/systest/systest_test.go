package systest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a TB that records what Missing did.
type recorder struct {
	fatal, skip string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recorder) Skip(args ...any)             { r.skip = fmt.Sprint(args...) }

func TestRequire(t *testing.T) {
	lacks := func(what string) Need { return func() error { return fmt.Errorf("%s", what) } }
	has := func() error { return nil }
	tests := []struct {
		name      string
		optOut    string
		needs     []Need
		wantFatal string // substring; "" means no failure
		wantSkip  string
	}{
		{"all present", "", []Need{has, has}, "", ""},
		{"missing fails by default", "", []Need{has, lacks("nft on PATH (Debian package nftables)")}, "nft on PATH (Debian package nftables)", ""},
		{"every missing thing is named", "", []Need{lacks("root"), lacks("redis-server")}, "root, redis-server", ""},
		{"opt-out skips with the marker", "1", []Need{lacks("iperf3")}, "", Marker + " iperf3"},
		{"opt-out needs exactly 1", "yes", []Need{lacks("iperf3")}, "iperf3", ""},
		{"opt-out with nothing missing runs", "1", []Need{has}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvSkip, tt.optOut)
			var r recorder
			Require(&r, tt.needs...)
			if tt.wantFatal == "" && r.fatal != "" || tt.wantFatal != "" && !strings.Contains(r.fatal, tt.wantFatal) {
				t.Errorf("fatal = %q, want it to contain %q", r.fatal, tt.wantFatal)
			}
			if tt.wantSkip == "" && r.skip != "" || tt.wantSkip != "" && !strings.HasPrefix(r.skip, tt.wantSkip) {
				t.Errorf("skip = %q, want prefix %q", r.skip, tt.wantSkip)
			}
			if r.fatal != "" && !strings.Contains(r.fatal, EnvSkip+"=1") {
				t.Errorf("failure %q does not say how to opt out", r.fatal)
			}
		})
	}
}

func TestNeeds(t *testing.T) {
	if err := Tool("sh", "dash")(); err != nil {
		t.Errorf("Tool(sh): %v", err)
	}
	if err := Tool("no-such-tool-cyphonic", "nothing")(); err == nil || !strings.Contains(err.Error(), "Debian package nothing") {
		t.Errorf("Tool(missing) = %v", err)
	}
	if err := File("/no/such/file")(); err == nil {
		t.Error("File(missing) = nil")
	}
	if err := File("/")(); err != nil {
		t.Errorf("File(/) = %v", err)
	}
}
