package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// Open opens the store named by rawURL:
//
//	bolt:///var/lib/cyphonic/registry.db   bbolt file (the default kind)
//	/var/lib/cyphonic/registry.db          the same, as a plain path
//	redis://host:6379/0?prefix=cyphonic:   Redis (rediss:// for TLS)
func Open(ctx context.Context, rawURL string) (Store, error) {
	scheme, _, found := strings.Cut(rawURL, "://")
	if !found {
		if rawURL == "" {
			return nil, fmt.Errorf("store: empty store URL")
		}
		return OpenBolt(rawURL)
	}
	switch strings.ToLower(scheme) {
	case "bolt":
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		if u.Host != "" || u.Path == "" {
			return nil, fmt.Errorf("store: bolt URL %q: want bolt:///absolute/path", rawURL)
		}
		return OpenBolt(u.Path)
	case "redis", "rediss":
		return OpenRedis(ctx, rawURL)
	}
	return nil, fmt.Errorf("store: unknown store URL scheme %q", scheme)
}
