package admin

import (
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}
