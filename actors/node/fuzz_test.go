package node

import (
	"encoding/json"
	"io"
	"testing"
)

// FuzzRenderStatus: whatever JSON a debug endpoint returns, decoding and
// rendering it never panics.
func FuzzRenderStatus(f *testing.F) {
	b, _ := json.Marshal(sampleStatus())
	f.Add(b)
	f.Add([]byte(`{"peers":[{"fqdn":"\u001b[2J","path":200,"drops":{"x":1}}],"session":{"last_keepalive_ack":"2999-01-01T00:00:00Z"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var st Status
		if json.Unmarshal(data, &st) != nil {
			return
		}
		if err := RenderStatus(io.Discard, st, now); err != nil {
			t.Fatal(err)
		}
	})
}
