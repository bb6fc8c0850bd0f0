package server_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/cloud/server"
)

// envChild makes the test binary run a cloud process instead of the tests:
// the split-deployment test needs a second process, since a process runs
// at most one protoactor remote (see the package comment).
const envChild = "CYPHONIC_SERVER_TEST_CHILD"

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if dir := os.Getenv(envChild); dir != "" {
		os.Exit(runChild(dir, os.Getenv(envChild+"_STORE"), os.Getenv(envChild+"_SERVICES")))
	}
	leaktest.VerifyTestMain(m)
}

// runChild runs the given services until stdin closes. It prints one line:
// READY, its gateway address and its NMS's signaling and probe addresses
// (a TRS alone: its relay address, twice; given a TRS in another child,
// envChild_TRS = "gateway relay-address", also its AS's address).
func runChild(dir, storeURL, services string) int {
	cfg := server.Config{
		DataDir: dir, StoreURL: storeURL, Ephemeral: true, Services: strings.Split(services, ","),
		Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	}
	// A TRS in another child: its gateway and relay address.
	trs := strings.Fields(os.Getenv(envChild + "_TRS"))
	if len(trs) == 2 {
		cfg.TRSRemote, cfg.TRSAddrs = trs[0], []netip.AddrPort{netip.MustParseAddrPort(trs[1])}
	}
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	switch {
	case s.NMS != nil && len(trs) == 2: // and its AS's address
		fmt.Println("READY", s.Remote, s.NMS.Addrs()[0], s.NMS.AltAddrs()[0], s.AS.Addrs()[0])
	case s.NMS != nil:
		fmt.Println("READY", s.Remote, s.NMS.Addrs()[0], s.NMS.AltAddrs()[0])
	default: // a TRS alone: its relay address
		fmt.Println("READY", s.Remote, s.TRS.Addrs()[0], s.TRS.Addrs()[0])
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
	if err := s.Close(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "child close:", err)
		return 1
	}
	return 0
}
