package svc

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/messages"
)

func TestFrameRoundTrip(t *testing.T) {
	id := messages.NewMsgID()
	bv, err := NewFrame("bob.example.cyphonic", id, "nms", time.Now(), messages.KeyHandoverAck{SessionID: 5})
	if err != nil {
		t.Fatal(err)
	}
	f, ok, err := DecodeFrame(bv)
	if !ok || err != nil || f.To != "bob.example.cyphonic" || f.Envelope.ID != id || f.Envelope.Type != messages.MsgKeyHandoverAck {
		t.Fatalf("decode: %+v %v %v", f, ok, err)
	}
	if _, ok, _ := DecodeFrame("not a frame"); ok {
		t.Fatal("a string decoded as a frame")
	}
	for _, b := range [][]byte{nil, {5, 'a'}, {0, 1, 2}} {
		if _, ok, err := DecodeFrame(wrapperspb.Bytes(b)); !ok || err == nil {
			t.Fatalf("%x: ok %v err %v", b, ok, err)
		}
	}
	if _, _, err := DecodeFrame(wrapperspb.Bytes(nil)); !errors.Is(err, ErrFrame) {
		t.Fatalf("empty frame: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	bv, _ := NewFrame("x.example", messages.NewMsgID(), "nms", time.Now(), messages.Keepalive{})
	f.Add(bv.GetValue())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = DecodeFrame(wrapperspb.Bytes(b))
	})
}
