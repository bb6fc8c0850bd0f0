package main

import (
	"os/exec"
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
