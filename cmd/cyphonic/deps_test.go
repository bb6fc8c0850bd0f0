package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayering holds the import graph to three rules: the shipped binary
// links no test code (nothing under test/, no "testing"; issue 11);
// nothing in actors/, tests included, imports the cloud: the node sits
// below it, and what both sides share (pki) sits below both (issue 11);
// and the node's binary links no cloud package, nor the gRPC and
// protoactor remote the cloud's gateway brings (issue 12: every linked
// package's init runs at a node's start and leaves its pages resident),
// nor text/template (html/template, net/http/pprof): its reflection
// (MethodByName) makes the linker keep every exported method of every
// linked type, 4 MB of the binary and 2 MiB of RSS at rest.
func TestLayering(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test needs the go command on PATH: %v", err)
	}
	deps := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(goBin, append([]string{"list", "-deps"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", args, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/cyphonic/cyphonic-go/"
	for _, p := range deps(".") {
		if strings.HasPrefix(p, mod+"test/") || p == "testing" || strings.HasSuffix(p, "/clitest") {
			t.Errorf("cmd/cyphonic links %s", p)
		}
		if strings.HasPrefix(p, mod+"cloud/") || strings.HasPrefix(p, mod+"cmd/internal/cloudcmd") ||
			strings.HasPrefix(p, "google.golang.org/grpc") || p == "github.com/asynkron/protoactor-go/remote" ||
			p == "text/template" || p == "html/template" || p == "net/http/pprof" {
			t.Errorf("the node's binary cmd/cyphonic links %s", p)
		}
	}
	for _, p := range deps("../cyphonic-cloud") {
		if strings.HasPrefix(p, mod+"test/") || p == "testing" || strings.HasSuffix(p, "/clitest") {
			t.Errorf("cmd/cyphonic-cloud links %s", p)
		}
	}
	for _, p := range deps("-test", "../../actors/...") {
		if strings.HasPrefix(p, mod+"cloud/") {
			t.Errorf("a package under actors/ depends on %s", p)
		}
	}
}

// TestNodeBinaryLinks builds the node's binary as the README does and checks
// its symbol table for code the node does not run but would map: a node
// maps nearly every page of its binary at rest (the kernel maps a whole
// cached folio or fault-around window on every fault), so each MB linked is
// about a MiB of RSS at rest (issue 12). go list cannot show this: the
// packages stay imported, only their reachable code is linked.
func TestNodeBinaryLinks(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test needs the go command on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cyphonic")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(goBin, "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	syms := string(out)
	for _, c := range []struct{ sym, why string }{
		// debug.GetJSON does the CLI's one GET to a debug endpoint.
		{"net/http.(*Transport).RoundTrip", "net/http's client (Transport, HTTP/2 client): ~0.4 MB"},
		// The debug endpoint is served by debug's http1Server.
		{"net/http.(*Server).Serve", "http.Server (with its HTTP/2 server): ~0.4 MB"},
		{"net/http.(*http2Server).serveConn", "http.Server's HTTP/2 server"},
		// Reached from http.Server and from dns.Client's dial (DNS over TLS);
		// the resolver dials its forwards itself.
		{"crypto/tls.(*Conn).clientHandshake", "crypto/tls: ~0.9 MB with the x509 and key-exchange code only it uses"},
	} {
		if strings.Contains(syms, " "+c.sym+"\n") {
			t.Errorf("the node's binary links %s, %s", c.sym, c.why)
		}
	}
}
