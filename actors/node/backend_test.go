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

func TestConfigTUNQueues(t *testing.T) {
	for _, tt := range []struct {
		backend tun.Backend
		in      int
		want    int // 0: chosen when the TUN is opened (openTUN)
		err     error
	}{
		{"", 0, 0, nil},
		{tun.BackendOffload, 0, 0, nil},
		{tun.BackendWater, 0, 1, nil},
		{tun.BackendOffloadRaw, 3, 3, nil},
		{tun.BackendOffload, 2, 2, nil},
		{tun.BackendWater, 2, 0, ErrConfig},
		{"", -1, 0, ErrConfig},
		{"", 9, 0, ErrConfig},
	} {
		c, err := Config{CertDir: "certs", Cloud: "127.0.0.1:7480", TUNBackend: tt.backend, TUNQueues: tt.in}.withDefaults()
		if !errors.Is(err, tt.err) || (err == nil && c.TUNQueues != tt.want) {
			t.Errorf("%q with %d queues: got %d, %v; want %d, %v", tt.backend, tt.in, c.TUNQueues, err, tt.want, tt.err)
		}
	}
}
