package cloudcmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
	"github.com/cyphonic/cyphonic-go/cmd/internal/clitest"
	"github.com/cyphonic/cyphonic-go/test/systest"
)

// asBinaryEnv makes the test binary behave as the cyphonic binary: the demo
// re-executes os.Executable() (this test binary, in TestDemo) as `cyphonic
// cloud`, `cyphonic node` and `cyphonic status` inside the namespaces.
const asBinaryEnv = "CYPHONIC_TEST_AS_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(asBinaryEnv) == "1" {
		os.Exit(cli.Run(allCommands(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestDemo runs `cyphonic demo` in-process, as the README's first command
// does: every pair of nodes must talk, each with a path and an RTT, and
// every namespace must be gone afterwards.
func TestDemo(t *testing.T) {
	if err := checkPrereqs(os.Geteuid(), exec.LookPath); err != nil {
		systest.Missing(t, fmt.Sprintf("what the demo needs: %v", err))
		return
	}
	t.Setenv(asBinaryEnv, "1")
	var stdout, stderr clitest.SyncBuffer
	code := cli.Run(allCommands(), []string{"demo", "--timeout", "50s"}, &stdout, &stderr)
	out := stdout.String()
	// The daemons are this test binary: under -race, a race in the node
	// or the cloud makes them exit 66, which the Bed reports when it stops
	// them.
	if e := stderr.String(); strings.Contains(e, "exit status 66") || strings.Contains(e, "DATA RACE") {
		t.Errorf("a daemon reported a data race:\n%s", e)
	}
	if code != 0 {
		t.Fatalf("cyphonic demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	names := []string{"alice", "bob", "carol", "dave"}
	for i, a := range names {
		for _, b := range names[i+1:] {
			row := regexp.MustCompile(`(?m)^` + a + `\.demo\.cyphonic → ` + b +
				`\.demo\.cyphonic +(direct|hole-punched|relay \(TRS\)) +[0-9]+\.[0-9]{2} ms +[1-3]/3 *$`)
			if !row.MatchString(out) {
				t.Errorf("no row with a path and an RTT for %s → %s in:\n%s", a, b, out)
			}
		}
	}
	if !strings.Contains(out, "all 6 pairs talked") {
		t.Errorf("no success line in:\n%s", out)
	}
	m := regexp.MustCompile(`namespaces (cy[0-9a-f]{4})-\*`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no namespace prefix in:\n%s", out)
	}
	left, _ := filepath.Glob("/run/netns/" + m[1] + "-*")
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

func TestCheckPrereqs(t *testing.T) {
	all := func(string) (string, error) { return "/usr/sbin/x", nil }
	without := func(missing ...string) func(string) (string, error) {
		return func(name string) (string, error) {
			if slices.Contains(missing, name) {
				return "", exec.ErrNotFound
			}
			return "/usr/sbin/" + name, nil
		}
	}
	tests := []struct {
		name     string
		euid     int
		lookPath func(string) (string, error)
		want     error
		mentions []string
	}{
		{"root with every tool", 0, all, nil, nil},
		{"not root", 1000, all, errNotRoot, []string{"needs root", "network namespaces", "sudo"}},
		{"not root, no tools either: root is said first", 1000, without("ip", "nft", "ping"), errNotRoot, []string{"sudo"}},
		{"no nft", 0, without("nft"), errPrereq, []string{"nft", "nftables"}},
		{"no ip nor ping", 0, without("ip", "ping"), errPrereq, []string{"ip, ping", "iproute2", "iputils-ping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPrereqs(tt.euid, tt.lookPath)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("checkPrereqs = %v, want %v", err, tt.want)
			}
			for _, s := range tt.mentions {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// TestDemoNotRootTouchesNothing: a non-root user is told before any tool
// is even looked up.
func TestDemoNotRootTouchesNothing(t *testing.T) {
	looked := false
	err := checkPrereqs(1000, func(string) (string, error) { looked = true; return "", nil })
	if !errors.Is(err, errNotRoot) || looked {
		t.Fatalf("err %v, looked up tools: %v", err, looked)
	}
}

func TestParsePing(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want pingStats
		err  error
	}{
		{
			name: "all replies",
			out: "PING bob.demo.cyphonic (100.64.0.2) 56(84) bytes of data.\n" +
				"64 bytes from 100.64.0.2: icmp_seq=1 ttl=64 time=0.392 ms\n\n" +
				"--- bob.demo.cyphonic ping statistics ---\n" +
				"3 packets transmitted, 3 received, 0% packet loss, time 404ms\n" +
				"rtt min/avg/max/mdev = 0.392/0.624/0.856/0.232 ms\n",
			want: pingStats{Sent: 3, Received: 3, AvgRTT: 624 * time.Microsecond},
		},
		{
			name: "no reply",
			out: "--- bob.demo.cyphonic ping statistics ---\n" +
				"3 packets transmitted, 0 received, 100% packet loss, time 2045ms\n",
			want: pingStats{Sent: 3},
		},
		{
			name: "errors counted",
			out: "3 packets transmitted, 1 received, +2 errors, 66.6667% packet loss, time 405ms\n" +
				"rtt min/avg/max/mdev = 12.500/12.500/12.500/0.000 ms\n",
			want: pingStats{Sent: 3, Received: 1, AvgRTT: 12500 * time.Microsecond},
		},
		{
			name: "busybox wording",
			out:  "3 packets transmitted, 2 packets received, 33% packet loss\nround-trip min/avg/max = 1.000/2.000/3.000 ms\n",
			want: pingStats{Sent: 3, Received: 2, AvgRTT: 2 * time.Millisecond},
		},
		{name: "unknown host", out: "ping: carol.demo.cyphonic: Temporary failure in name resolution\n", err: errPingOutput},
		{name: "nothing", out: "", err: errPingOutput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePing([]byte(tt.out))
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPrintResults(t *testing.T) {
	a, b, c := &demoNode{name: "alice"}, &demoNode{name: "bob"}, &demoNode{name: "carol"}
	var out clitest.SyncBuffer
	failed := printResults(&out, []pairResult{
		{from: a, to: b, path: "hole-punched", ping: pingStats{Sent: 3, Received: 3, AvgRTT: 1234 * time.Microsecond}},
		{from: a, to: c, path: "-", ping: pingStats{Sent: 3}, err: errors.New("no reply")},
	})
	if fmt.Sprint(failed) != "[alice→carol]" {
		t.Errorf("failed = %v", failed)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^alice\.demo\.cyphonic → bob\.demo\.cyphonic +hole-punched +1\.23 ms +3/3`),
		regexp.MustCompile(`(?m)^alice\.demo\.cyphonic → carol\.demo\.cyphonic +- +- +0/3`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("output does not match %s:\n%s", want, out.String())
		}
	}
}
