package cloudsim

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/cloud/server"
)

// envChild makes the test binary run a cloud process instead of the tests
// (TestTwoCloudsShareRedis starts a second cloud process this way: one
// protoactor remote per process, see cloud/server's package comment).
const envChild = "CLOUDSIM_CHILD_CLOUD"

func TestMain(m *testing.M) {
	// Keep the cloud's per-login info lines out of test output.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if dir := os.Getenv(envChild); dir != "" {
		os.Exit(runChild(dir, os.Getenv(envChild+"_STORE"), os.Getenv(envChild+"_DEBUG")))
	}
	leaktest.VerifyTestMain(m)
}

// runChild runs a cloud until stdin closes; it prints its AS address and,
// if debugAddr is set (the load benchmark's), then its debug address.
func runChild(dir, storeURL, debugAddr string) int {
	if debugAddr != "" {
		// The load tool reads heap profiles: sample finely enough to
		// attribute a few hundred bytes per node (-load.memprofilerate;
		// 0: Go's default, for CPU figures without the sampling's cost).
		runtime.MemProfileRate = 4096
		if r, err := strconv.Atoi(os.Getenv(envChild + "_MEMRATE")); err == nil {
			if r > 0 {
				runtime.MemProfileRate = r
			} else {
				runtime.MemProfileRate = 512 << 10
			}
		}
	}
	s, err := server.Start(context.Background(), server.Config{
		DataDir: dir, StoreURL: storeURL, Ephemeral: true, DebugAddr: debugAddr,
		Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("READY", s.AS.Addrs()[0])
	if debugAddr != "" {
		fmt.Println("DEBUG", s.DebugAddr())
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close(context.Background())
	return 0
}
