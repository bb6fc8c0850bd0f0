package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering holds the import graph to two rules (issue 11): the shipped
// binary links no test code (nothing under test/, no "testing"), and
// nothing in actors/, tests included, imports the cloud: the node sits
// below it, and what both sides share (pki) sits below both.
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
		if strings.HasPrefix(p, mod+"test/") || p == "testing" {
			t.Errorf("cmd/cyphonic links %s", p)
		}
	}
	for _, p := range deps("-test", "../../actors/...") {
		if strings.HasPrefix(p, mod+"cloud/") {
			t.Errorf("a package under actors/ depends on %s", p)
		}
	}
}
