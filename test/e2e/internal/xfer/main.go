// Command xfer moves a deterministic byte stream over one TCP connection
// and prints what it saw, for the end-to-end tests: "xfer recv" accepts
// exactly one connection and reads it to EOF, "xfer send" resolves its
// target through the system resolver (so the namespace's resolv.conf, and
// with it the node's resolver, is used), connects once and writes. Both
// print one JSON line with the byte count and the stream's SHA-256, so the
// test compares the two ends; a connection that breaks fails the sender,
// which is how a test shows a transfer survived on the same connection.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"
)

// Result is what both ends print.
type Result struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Local  string `json:"local"`
	Remote string `json:"remote"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "xfer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: xfer recv|send [flags]")
	}
	fs := flag.NewFlagSet("xfer "+args[0], flag.ContinueOnError)
	listen := fs.String("listen", "[::]:5001", "recv: address to listen on")
	to := fs.String("to", "", "send: host:port (the host may be a name)")
	network := fs.String("net", "tcp", "send: tcp, tcp4 or tcp6")
	size := fs.Int64("bytes", 4<<20, "send: bytes to send")
	seed := fs.Uint64("seed", 1, "send: seed of the byte stream")
	rate := fs.Int64("rate", 0, "send: bytes per second (0: as fast as possible)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var res Result
	var err error
	switch args[0] {
	case "recv":
		res, err = recv(ctx, *listen)
	case "send":
		res, err = send(ctx, *network, *to, *size, *seed, *rate)
	default:
		return fmt.Errorf("unknown mode %q", args[0])
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// recv accepts one connection and hashes everything it reads.
func recv(ctx context.Context, addr string) (Result, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return Result{}, fmt.Errorf("listen %s: %w", addr, err)
	}
	defer ln.Close()
	// Tell the test we listen, so it starts the sender only now.
	fmt.Fprintln(os.Stderr, "listening", ln.Addr())
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	c, err := ln.Accept()
	if err != nil {
		return Result{}, fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	stopConn := context.AfterFunc(ctx, func() { c.Close() })
	defer stopConn()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return Result{}, fmt.Errorf("read after %d bytes: %w", n, err)
	}
	return Result{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil)), Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}, nil
}

// send connects once to to and writes size bytes of the seeded stream,
// at most rate bytes a second if rate > 0.
func send(ctx context.Context, network, to string, size int64, seed uint64, rate int64) (Result, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, to)
	if err != nil {
		return Result{}, fmt.Errorf("dial %s: %w", to, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	h := sha256.New()
	buf := make([]byte, 32<<10)
	start := time.Now()
	var sent int64
	for sent < size {
		chunk := buf[:min(int64(len(buf)), size-sent)]
		_, _ = src.Read(chunk)
		if _, err := c.Write(chunk); err != nil {
			return Result{}, fmt.Errorf("write after %d bytes: %w", sent, err)
		}
		h.Write(chunk)
		sent += int64(len(chunk))
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return Result{}, ctx.Err()
				}
			}
		}
	}
	// Half-close and wait for the receiver's close, so every byte is
	// acknowledged end to end before we report success.
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil {
			return Result{}, fmt.Errorf("close write: %w", err)
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			return Result{}, fmt.Errorf("wait for the receiver: %w", err)
		}
	}
	return Result{Bytes: sent, SHA256: hex.EncodeToString(h.Sum(nil)), Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}, nil
}
