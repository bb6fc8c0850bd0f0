package tun

import (
	"errors"
	"fmt"
	"os"
)

// deviceErr wraps err from op on device name, reporting ErrClosed once the
// device is closed (the poller's own "file already closed" error is not a
// stable sentinel).
func deviceErr(name, op string, closed bool, err error) error {
	if closed || errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("tun: %s %s: %w", op, name, ErrClosed)
	}
	return fmt.Errorf("tun: %s %s: %w", op, name, err)
}

// readCount checks a Read call's buffers against the device's MTU and
// returns how many packets the call may fill.
func readCount(name string, mtu int, bufs [][]byte, sizes []int, offset int) (int, error) {
	count := min(len(bufs), len(sizes))
	for i := range count {
		if len(bufs[i])-offset < mtu {
			return 0, fmt.Errorf("tun: read %s: buffer %d: %w", name, i, ErrShortBuffer)
		}
	}
	return count, nil
}
