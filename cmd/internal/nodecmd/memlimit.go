package nodecmd

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/cyphonic/cyphonic-go/cmd/internal/cli"
)

// defaultNodeMemoryLimit is the node's soft memory limit: a bound on a
// heap that would grow to GOGC's twice the live heap with more peers, not
// how the node's memory is made small. What keeps it small under load is
// the data plane's in-flight budget (actors/dataplane/budget.go): with ten
// pushers in test/perf the responder's heap (HeapAlloc) peaks at ~16 MB,
// the GC runs 0-2 times in the 10-second load and RSS is ~30 MiB
// (BENCHMARKS.md, s8-mem). Before the budget the heap reached the limit (25 MB live) and
// the GC ran 650 times in that load, a fifth of the responder's CPU: a
// limit the live heap reaches makes the GC thrash rather than bound
// anything. So it stays well above the heap under load; at 24 MiB the
// old heap ran 150-340 GCs per load for 3 MiB less RSS.
const defaultNodeMemoryLimit = "32MiB"

// parseMemoryLimit reads a size as GOMEMLIMIT writes it (a number of bytes
// with an optional B, KiB, MiB or GiB suffix); "off" is no limit.
func parseMemoryLimit(s string) (int64, error) {
	if s == cli.Off {
		return math.MaxInt64, nil
	}
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want a size such as 32MiB, 1GiB or 'off'", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: too large", s)
	}
	const least = 4 << 20
	if n*mult < least {
		return 0, fmt.Errorf("%q: under 4MiB the GC would run without pause", s)
	}
	return n * mult, nil
}

// errMemoryLimitEnv says GOMEMLIMIT, not the flag's default, sets the limit.
var errMemoryLimitEnv = errors.New("GOMEMLIMIT is set")

// memoryLimit returns the soft limit to set from the flag's value: given
// says the operator gave it (flag or config key); otherwise GOMEMLIMIT in
// the environment, which the runtime has applied already, wins over the
// default.
func memoryLimit(value string, given bool, getenv func(string) string) (int64, error) {
	if !given && getenv("GOMEMLIMIT") != "" {
		return 0, errMemoryLimitEnv
	}
	return parseMemoryLimit(value)
}

// nodeMemoryLimit checks --memory-limit and returns the function that sets
// it (see memoryLimit; nil: leave the runtime's).
func nodeMemoryLimit(o *cli.Options, value string) (func(), error) {
	n, err := memoryLimit(value, o.Given("memory-limit"), os.Getenv)
	if errors.Is(err, errMemoryLimitEnv) {
		return nil, nil
	}
	if err != nil {
		return nil, o.UsageErr("memory-limit", "%v", err)
	}
	return func() { debug.SetMemoryLimit(n) }, nil
}
