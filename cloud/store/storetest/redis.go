package storetest

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cyphonic/cyphonic-go/test/systest"
)

// EnvRedis names a Redis server for tests, e.g. redis://127.0.0.1:6379/15.
const EnvRedis = "CYPHONIC_TEST_REDIS"

// RedisURL returns the URL of a Redis server for t: the one in
// $CYPHONIC_TEST_REDIS, or else a redis-server it starts on a free loopback
// port (no persistence) and stops when t ends. Without either it fails t,
// or skips it when the user opted out of system tests (systest.EnvSkip).
//
// Tests sharing a server must keep to their own keys: give each store a
// distinct ?prefix= (FreshRedisURL does).
func RedisURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvRedis); u != "" {
		return u
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		systest.Missing(t, "a Redis server: redis-server on PATH (Debian package redis-server), or "+EnvRedis+"=redis://host:port/db")
		return ""
	}
	var lastErr error
	for range 5 { // a free port can be taken before the server binds it
		u, err := startRedis(t, path)
		if err == nil {
			return u
		}
		lastErr = err
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return ""
}

type startError struct {
	err    error
	output string
}

func (e *startError) Error() string { return e.err.Error() + ": " + e.output }

func startRedis(t testing.TB, path string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := exec.Command(path,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}

	u := "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
	opts, _ := redis.ParseURL(u)
	c := redis.NewClient(opts)
	defer c.Close()
	// Wait for readiness (bounded): the server is ready once it answers.
	for range 400 {
		select {
		case err := <-exited:
			exited <- err
			stop()
			return "", &startError{err: err, output: out.String()}
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			t.Cleanup(stop)
			return u, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	stop()
	return "", &startError{err: err, output: out.String()}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WithPrefix returns rawURL with its store key prefix set to prefix.
func WithPrefix(t testing.TB, rawURL, prefix string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("redis URL %q: %v", rawURL, err)
	}
	q := u.Query()
	q.Set("prefix", prefix)
	u.RawQuery = q.Encode()
	return u.String()
}

// DeletePrefix removes every key under prefix from the server at rawURL,
// so tests on a shared server leave nothing behind.
func DeletePrefix(t testing.TB, rawURL, prefix string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("prefix")
	u.RawQuery = q.Encode()
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("clean up redis keys %s*: %v", prefix, err)
		return
	}
	if len(keys) > 0 {
		if err := c.Del(ctx, keys...).Err(); err != nil {
			t.Errorf("clean up redis keys %s*: %v", prefix, err)
		}
	}
}
