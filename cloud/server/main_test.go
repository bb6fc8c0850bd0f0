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
// READY, its gateway address and its NMS's signaling and probe addresses.
func runChild(dir, storeURL, services string) int {
	s, err := server.Start(context.Background(), server.Config{
		DataDir: dir, StoreURL: storeURL, Ephemeral: true, Services: strings.Split(services, ","),
		Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("READY", s.Remote, s.NMS.Addrs()[0], s.NMS.AltAddrs()[0])
	bufio.NewReader(os.Stdin).ReadString('\n')
	if err := s.Close(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "child close:", err)
		return 1
	}
	return 0
}
