package svc

import (
	"errors"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

func TestFrameRoundTrip(t *testing.T) {
	id := messages.NewMsgID()
	b, err := NewFrame("bob.example.cyphonic", id, "nms", time.Now(), messages.KeyHandoverAck{SessionID: 5})
	if err != nil {
		t.Fatal(err)
	}
	from := Ref{Process: "10.0.0.1:7410", Service: AS, ID: "as/tx-1"}
	f, ok, err := DecodeFrame(&Message{Frame: b, ReplyTo: from})
	if !ok || err != nil || f.To != "bob.example.cyphonic" || f.Envelope.ID != id || f.Envelope.Type != messages.MsgKeyHandoverAck || f.ReplyTo != from {
		t.Fatalf("decode: %+v %v %v", f, ok, err)
	}
	if _, ok, _ := DecodeFrame("not a frame"); ok {
		t.Fatal("a string decoded as a frame")
	}
	if _, ok, _ := DecodeFrame((*Message)(nil)); ok {
		t.Fatal("a nil message decoded as a frame")
	}
	for _, b := range [][]byte{nil, {5, 'a'}, {0, 1, 2}} {
		if _, ok, err := DecodeFrame(&Message{Frame: b}); !ok || err == nil {
			t.Fatalf("%x: ok %v err %v", b, ok, err)
		}
	}
	if _, err := ParseFrame(nil); !errors.Is(err, ErrFrame) {
		t.Fatalf("empty frame: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	b, _ := NewFrame("x.example", messages.NewMsgID(), "nms", time.Now(), messages.Keepalive{})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseFrame(b)
	})
}
