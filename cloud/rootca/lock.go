package rootca

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockFile serialises writers of a CA directory across processes (two
// `cyphonic ca issue` run at once must not hand out one VIP pair twice, two
// `ca revoke` must not sign two lists under one number). ca.mu does the same
// within a process; flock is released when the file is closed.
const lockFile = ".lock"

func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
