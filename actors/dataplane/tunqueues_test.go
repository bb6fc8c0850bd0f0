package dataplane

import (
	"fmt"
	"testing"
)

// TestTUNQueueChoice: with one queue everything is written on it; with two
// or more the last carries only ICMP and the peers take the others in
// turn, the same queue for a peer however often it is asked.
func TestTUNQueueChoice(t *testing.T) {
	for _, tc := range []struct {
		queues tunQueues
		bulk   []int // the queue of the peers pinned 0, 1, 2, ...
		icmp   int
	}{
		{1, []int{0, 0, 0, 0}, 0},
		{2, []int{0, 0, 0, 0}, 1},
		{3, []int{0, 1, 0, 1, 0}, 2},
		{4, []int{0, 1, 2, 0, 1, 2}, 3},
		{MaxTUNQueues, []int{0, 1, 2, 3, 4, 5, 6, 0}, MaxTUNQueues - 1},
	} {
		t.Run(fmt.Sprint(tc.queues), func(t *testing.T) {
			if got := tc.queues.icmp(); got != tc.icmp {
				t.Fatalf("ICMP on queue %d, want %d", got, tc.icmp)
			}
			for pin, want := range tc.bulk {
				for range 3 { // asked again, the same answer
					got := tc.queues.bulk(uint32(pin))
					if got != want {
						t.Fatalf("peer %d on queue %d, want %d", pin, got, want)
					}
					if tc.queues > 1 && got == tc.icmp {
						t.Fatalf("peer %d's bulk on the ICMP queue", pin)
					}
				}
			}
		})
	}
}
