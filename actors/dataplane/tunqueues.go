package dataplane

// A multi-queue TUN (Config.Queues, tun.OpenOffloadQueues): one reader and
// one writer goroutine per queue, so the TUN writer stops being one serial
// stage that an idle peer's ping waits behind.
//
// Which queue a peer's inbound batches are written on is fixed for its
// handle's life (peerHandle.tunQueue): a flow's packets never split over
// two writers, so they reach the kernel in order, and the kernel's tun flow
// steering sends the host's answers of that flow out on the same queue,
// to that queue's reader. With two queues or more the last one carries
// only the ICMP lanes (pushLanes), so a ping never waits behind a bulk
// write at a TUN writer: one Device.Write under 10 pushers takes up to a
// millisecond (the kernel's TCP receive of what it delivers runs inside
// it), and the ping's wait at the writer fell from 1.04 ms to 6 µs when it
// had a queue of its own (BENCHMARKS.md, s9-tunw and s10-tunq).

// MaxTUNQueues bounds Config.Queues (with Device): more writers than this
// only add goroutines on the machines the node runs on.
const MaxTUNQueues = 8

// tunQueues is how many queues the TUN has, and so how they are shared out.
type tunQueues int

// bulk is the queue of the pin-th peer's packets other than ICMP: peers
// take the bulk queues in turn, all but the last queue when there are two
// or more.
func (n tunQueues) bulk(pin uint32) int {
	if n <= 1 {
		return 0
	}
	return int(pin % uint32(n-1))
}

// icmp is the queue every peer's ICMP lane is written on: the last one
// (with one queue, the only one).
func (n tunQueues) icmp() int { return max(int(n)-1, 0) }
