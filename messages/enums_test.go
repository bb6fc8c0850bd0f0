package messages

import (
	"encoding/json"
	"testing"
)

// TestEnumJSON: the enums that reach status JSON print as the tables do and
// read back to the same value, unnamed values included.
func TestEnumJSON(t *testing.T) {
	type doc struct {
		Path PathKind  `json:"path,omitempty"`
		NAT  NATType   `json:"nat"`
		Code ErrorCode `json:"code"`
		Type MsgType   `json:"type"`
	}
	tests := []struct {
		in   doc
		want string
	}{
		{doc{PathDirect, NATNone, CodeCertExpired, MsgPath}, `{"path":"direct","nat":"none","code":"cert-expired","type":"path"}`},
		{doc{PathHolePunch, NATEndpointIndependent, CodeUnknown, MsgLoginRequest}, `{"path":"hole-punch","nat":"endpoint-independent","code":"unknown","type":"login-request"}`},
		{doc{PathRelay, NATSymmetric, CodeRateLimited, MsgError}, `{"path":"relay","nat":"symmetric","code":"rate-limited","type":"error"}`},
		{doc{0, NATUnknown, 0, 0}, `{"nat":"unknown","code":"unknown","type":"MsgType(0)"}`},
		{doc{PathKind(9), NATType(7), ErrorCode(999), MsgType(200)}, `{"path":"PathKind(9)","nat":"NATType(7)","code":"ErrorCode(999)","type":"MsgType(200)"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.in)
		if err != nil {
			t.Fatalf("marshal %+v: %v", tt.in, err)
		}
		if string(b) != tt.want {
			t.Errorf("marshal %+v = %s, want %s", tt.in, b, tt.want)
		}
		var back doc
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if back != tt.in {
			t.Errorf("round trip %+v -> %s -> %+v", tt.in, b, back)
		}
	}
	for _, bad := range []string{`{"path":"sideways"}`, `{"nat":"NATType(300)"}`, `{"path":"PathKind(x)"}`, `{"code":7}`} {
		var d doc
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("unmarshal %s = %+v, want an error", bad, d)
		}
	}
}
