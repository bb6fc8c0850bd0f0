package dataplane

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/fallback"
)

// TestTimingFor: the connectivity timers of Config reach the peers'
// timing; zero keeps the default.
func TestTimingFor(t *testing.T) {
	tests := []struct {
		name                     string
		cfg                      Config
		fallback, passive, quiet time.Duration
	}{
		{"defaults", Config{}, fallback.DefaultAfter, DefaultPassiveKeepalive, DefaultSilenceAfter},
		{"all set", Config{FallbackAfter: 3 * time.Second, PassiveKeepalive: time.Second, SilenceAfter: 4 * time.Second},
			3 * time.Second, time.Second, 4 * time.Second},
		{"one set", Config{SilenceAfter: 5 * time.Second}, fallback.DefaultAfter, DefaultPassiveKeepalive, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := timingFor(tt.cfg)
			if got.FallbackAfter != tt.fallback || got.PassiveKeepalive != tt.passive || got.SilenceAfter != tt.quiet {
				t.Fatalf("fallback %v, passive %v, silence %v; want %v, %v, %v",
					got.FallbackAfter, got.PassiveKeepalive, got.SilenceAfter, tt.fallback, tt.passive, tt.quiet)
			}
		})
	}
}
