package rootca

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/cyphonic/cyphonic-go/pki"
)

// RevokedFile is the legacy deny list (one serial per line in lowercase
// hex; blank lines and # comments ignored), from before the list was a
// signed CRL. Revoke carries its serials into the first CRL; nothing else
// reads it.
const RevokedFile = "revoked.txt"

func parseDenyList(b []byte) (*pki.DenyList, error) {
	var serials []*big.Int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		n, err := pki.ParseSerial(t)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		serials = append(serials, n)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return pki.NewDenyList(serials...), nil
}

func loadLegacyDenyList(caDir string) (*pki.DenyList, error) {
	p := filepath.Join(caDir, RevokedFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return pki.NewDenyList(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("rootca: load legacy deny list: %w", err)
	}
	d, err := parseDenyList(b)
	if err != nil {
		return nil, fmt.Errorf("rootca: load legacy deny list %s: %w", p, err)
	}
	return d, nil
}
