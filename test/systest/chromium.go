package systest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// Chromium needs Debian's chromium, which loads the debug pages in tests.
func Chromium() Need { return Tool("chromium", "chromium") }

// Headless is one run of headless Chromium on a page.
type Headless struct {
	URL string
	// Budget is the virtual time the page's timers get: Chromium runs
	// them fast, pausing while fetches are pending, then stops.
	Budget time.Duration
	// ProfileDir is a fresh directory for Chromium's profile (t.TempDir()).
	ProfileDir string
	// Screenshot, if set, is the PNG to write, of a window Width x Height,
	// instead of dumping the DOM.
	Screenshot    string
	Width, Height int
}

// Run runs Chromium and returns the DOM as the page's scripts left it (or
// nothing, for a screenshot).
func (h Headless) Run(ctx context.Context) (string, error) {
	args := []string{
		"--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + h.ProfileDir,
		fmt.Sprintf("--virtual-time-budget=%d", h.Budget.Milliseconds()),
	}
	if os.Geteuid() == 0 {
		args = append(args, "--no-sandbox") // Chromium's sandbox refuses to run as root
	}
	if h.Screenshot != "" {
		args = append(args, fmt.Sprintf("--window-size=%d,%d", h.Width, h.Height), "--screenshot="+h.Screenshot)
	} else {
		args = append(args, "--dump-dom")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "chromium", append(args, h.URL)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chromium %s: %w\n%s", h.URL, err, stderr.String())
	}
	return stdout.String(), nil
}
