package nodecmd

import (
	"errors"
	"math"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		value string
		given bool
		env   string
		want  int64
		err   bool
		isEnv bool
	}{
		{value: "32MiB", want: 32 << 20},
		{value: "1GiB", given: true, want: 1 << 30},
		{value: "8192KiB", given: true, want: 8 << 20},
		{value: "33554432", given: true, want: 32 << 20},
		{value: "33554432B", given: true, want: 32 << 20},
		{value: "off", given: true, want: math.MaxInt64},
		{value: "32MiB", env: "100MiB", isEnv: true},                 // the default leaves GOMEMLIMIT alone
		{value: "48MiB", given: true, env: "100MiB", want: 48 << 20}, // the flag wins
		{value: "1MiB", given: true, err: true},                      // the GC would never rest
		{value: "24MB", given: true, err: true},
		{value: "-5MiB", given: true, err: true},
		{value: "", given: true, err: true},
		{value: "99999999999GiB", given: true, err: true},
	} {
		got, err := memoryLimit(tc.value, tc.given, env(tc.env))
		switch {
		case tc.isEnv:
			if !errors.Is(err, errMemoryLimitEnv) {
				t.Errorf("%q with GOMEMLIMIT=%s: %v, want GOMEMLIMIT to stand", tc.value, tc.env, err)
			}
		case tc.err:
			if err == nil {
				t.Errorf("%q: %d, want an error", tc.value, got)
			}
		case err != nil || got != tc.want:
			t.Errorf("%q: %d, %v; want %d", tc.value, got, err, tc.want)
		}
	}
}
