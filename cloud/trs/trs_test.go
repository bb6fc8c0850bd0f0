package trs

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/systest"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/actors/runtime"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/messages"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// TestRelayV4ToV6 allocates a session as NMS would and relays a packet from
// an IPv4 node to an IPv6 node and back.
func TestRelayV4ToV6(t *testing.T) {
	// The TRS and an NMS stand-in, each in its own actor system, linked
	// by a router as in a cloud process.
	router := svc.NewRouter(nil)
	sys, nmsSys := runtime.New(svc.TRS, nil), runtime.New(svc.NMS, nil)
	router.Attach(svc.TRS, sys.Actors())
	router.Attach(svc.NMS, nmsSys.Actors())
	s, err := Start(sys, Config{Listen: []string{"127.0.0.1:0", "[::1]:0"}, Link: router.Link(svc.TRS)})
	if err != nil {
		_ = nmsSys.Shutdown(context.Background())
		systest.Missing(t, fmt.Sprintf("IPv4 and IPv6 loopback (%v)", err))
		return
	}
	defer func() {
		s.Close()
		_ = sys.Shutdown(context.Background())
		_ = nmsSys.Shutdown(context.Background())
	}()
	var session messages.MsgID
	var tokA, tokB messages.RelayToken
	session[0], tokA[0], tokB[0] = 1, 2, 3
	f, err := svc.NewFrame("", messages.NewMsgID(), "nms", time.Now(), messages.RelayAlloc{
		Session: session, TokenA: tokA, TokenB: tokB, FQDNA: "a.example", FQDNB: "b.example",
		Expires: time.Now().Add(time.Hour).UnixNano(),
	})
	if err != nil {
		t.Fatal(err)
	}
	replies := make(chan svc.Frame, 1)
	nmsLink := router.Link(svc.NMS)
	_, err = nmsSys.Spawn(nil, "nms", "nms", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			if err := nmsLink.Request(ctx.Self(), svc.RootOf("", svc.TRS), f); err != nil {
				replies <- svc.Frame{}
			}
		}
		if rf, ok, err := svc.DecodeFrame(ctx.Message()); ok && err == nil {
			replies <- rf
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	rf := <-replies
	if rep, err := messages.DecodeBody[messages.RelayAllocReply](rf.Envelope); err != nil || !rep.OK {
		t.Fatalf("alloc reply %+v %v", rep, err)
	}

	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var trs4, trs6 netip.AddrPort
	for _, ap := range s.Addrs() {
		if ap.Addr().Is4() {
			trs4 = ap
		} else {
			trs6 = ap
		}
	}
	frame := func(tok messages.RelayToken, inner []byte) []byte {
		p := make([]byte, messages.RelayHeaderLen+len(inner))
		messages.PutRelayHeader(p, tok)
		copy(p[messages.RelayHeaderLen:], inner)
		return p
	}
	// B binds (empty inner) so the relay knows where it is, then A sends.
	inner := []byte{byte(messages.TypeData), 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	if _, err := b.WriteToUDPAddrPort(frame(tokB, nil), trs6); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2048)
	for attempt := 0; ; attempt++ {
		// The bind and the data packet race on two sockets: resend until
		// B hears it (each send is a separate forward attempt), 50 times
		// at most.
		if attempt == 50 {
			t.Fatal("B never heard A through the relay")
		}
		if _, err := a.WriteToUDPAddrPort(frame(tokA, inner), trs4); err != nil {
			t.Fatal(err)
		}
		b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := b.ReadFromUDPAddrPort(got)
		if err == nil {
			tok, payload, err := messages.ParseRelay(got[:n])
			if err != nil || tok != tokB || string(payload) != string(inner) {
				t.Fatalf("B got token %x payload %x err %v", tok, payload, err)
			}
			break
		}
	}
	// And back, B -> A: A's endpoint is known now.
	if _, err := b.WriteToUDPAddrPort(frame(tokB, inner), trs6); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := a.ReadFromUDPAddrPort(got)
	if err != nil {
		t.Fatal(err)
	}
	if tok, payload, err := messages.ParseRelay(got[:n]); err != nil || tok != tokA || string(payload) != string(inner) {
		t.Fatalf("A got token %x payload %x err %v", tok, payload, err)
	}
	if st := s.Table().Stats(); st.Forwarded.Packets < 2 || st.Forwarded.Bytes < 2*uint64(len(inner)) {
		t.Fatalf("counters %+v", st.Forwarded)
	}
}
