package node

import (
	"errors"
	"testing"

	"github.com/cyphonic/cyphonic-go/tun"
)

func TestConfigTUNBackend(t *testing.T) {
	for _, tt := range []struct {
		in   tun.Backend
		want tun.Backend
		err  error
	}{
		{"", tun.DefaultBackend, nil},
		{tun.BackendOffloadRaw, tun.BackendOffloadRaw, nil},
		{tun.BackendWater, tun.BackendWater, nil},
		{tun.BackendOffload, tun.BackendOffload, nil},
		{"netmap", "", ErrConfig},
	} {
		c, err := Config{CertDir: "certs", Cloud: "127.0.0.1:7480", TUNBackend: tt.in}.withDefaults()
		if !errors.Is(err, tt.err) || (err == nil && c.TUNBackend != tt.want) {
			t.Errorf("TUNBackend %q: got %q, %v; want %q, %v", tt.in, c.TUNBackend, err, tt.want, tt.err)
		}
	}
}
