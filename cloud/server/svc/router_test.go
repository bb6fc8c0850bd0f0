package svc

import (
	"context"
	"errors"
	"net"
	goruntime "runtime"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
)

// echo is a service root that answers every frame with a KeyHandoverAck
// of the same message ID, through its link.
func echo(link *Link) actor.Actor {
	return actorFunc(func(ctx actor.Context) {
		f, ok, err := DecodeFrame(ctx.Message())
		if !ok || err != nil {
			return
		}
		ack, err := NewFrame("", f.Envelope.ID, link.Service(), time.Now(), messages.KeyHandoverAck{SessionID: 7})
		if err == nil {
			_ = link.Reply(f, ack)
		}
	})
}

type actorFunc func(actor.Context)

func (f actorFunc) Receive(c actor.Context) { f(c) }

// asker sends one request on start and passes the answer on.
func asker(send func(self *actor.PID) error, got chan<- Frame) actor.Actor {
	return actorFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			if err := send(ctx.Self()); err != nil {
				panic(err) // the test's own wiring: a failure is a test bug
			}
		default:
			if f, ok, err := DecodeFrame(ctx.Message()); ok && err == nil {
				got <- f
			}
		}
	})
}

// twoServices runs an "as" and an "nms" system, each with its own router
// attachment, and an echoing NMS root.
func twoServices(t *testing.T, r *Router) (asSys *supervise.System) {
	t.Helper()
	asSys, nmsSys := supervise.New(AS, nil), supervise.New(NMS, nil)
	t.Cleanup(func() {
		r.Detach(AS)
		r.Detach(NMS)
		for _, s := range []*supervise.System{asSys, nmsSys} {
			if err := s.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	r.Attach(AS, asSys.Actors())
	r.Attach(NMS, nmsSys.Actors())
	nmsLink := r.Link(NMS)
	if _, err := nmsSys.Spawn(nil, "nms", NMS, actor.PropsFromProducer(func() actor.Actor { return echo(nmsLink) })); err != nil {
		t.Fatal(err)
	}
	return asSys
}

// roundTrip asks the NMS root at to from a fresh actor of the AS system
// and returns the answer.
func roundTrip(t *testing.T, r *Router, asSys *supervise.System, name string, to Ref) Frame {
	t.Helper()
	link := r.Link(AS)
	return roundTripBy(t, asSys, name, func(self *actor.PID, req []byte) error { return link.Request(self, to, req) })
}

// roundTripBy is roundTrip with the request sent by send.
func roundTripBy(t *testing.T, asSys *supervise.System, name string, send func(self *actor.PID, req []byte) error) Frame {
	t.Helper()
	id := messages.NewMsgID()
	req, err := NewFrame("", id, AS, time.Now(), messages.KeyHandover{SessionID: 7, FQDN: "a.example"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Frame, 1)
	sendReq := func(self *actor.PID) error { return send(self, req) }
	if _, err := asSys.Spawn(nil, "tx", name, actor.PropsFromProducer(func() actor.Actor { return asker(sendReq, got) })); err != nil {
		t.Fatal(err)
	}
	f := <-got
	if f.Envelope.ID != id || f.Envelope.Type != messages.MsgKeyHandoverAck || f.ReplyTo != (Ref{}) {
		t.Fatalf("answer %+v", f)
	}
	return f
}

// TestRouterBetweenSystems: a request from an actor of one system reaches
// the root of another system of the same process, and the answer comes back
// to the asking actor, with no remote anywhere.
func TestRouterBetweenSystems(t *testing.T) {
	r := NewRouter(nil)
	asSys := twoServices(t, r)
	roundTrip(t, r, asSys, "tx-1", RootOf("", NMS))
	roundTrip(t, r, asSys, "tx-2", RootOf(LocalProcess, NMS))
	if st := r.Stats(); st.Local != 4 || st.Outbound != 0 || st.Inbound != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	if r.Addr() != LocalProcess {
		t.Fatalf("Addr %q without a gateway", r.Addr())
	}
	// Without a gateway there is no other process: any address is this one.
	roundTrip(t, r, asSys, "tx-3", RootOf("10.1.2.3:7410", NMS))
}

func TestRouterNoRoute(t *testing.T) {
	r := NewRouter(nil)
	link := r.Link(NMS)
	for _, c := range []struct {
		to   Ref
		want error
	}{
		{RootOf("", TRS), ErrNoRoute},
		{Ref{}, ErrRef},
		{Ref{Service: NMS}, ErrRef},
	} {
		if err := link.Send(c.to, []byte{0}); !errors.Is(err, c.want) {
			t.Errorf("send to %s: %v, want %v", c.to, err, c.want)
		}
	}
	if err := link.Reply(Frame{}, []byte{0}); err != nil {
		t.Errorf("reply to a frame that wants none: %v", err)
	}
	if st := r.Stats(); st.Dropped != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGatewayInbound runs a gateway (a real remote) and hands it a frame
// the way another process's gateway would: wrapped with its route, to the
// gateway actor. The frame reaches the NMS system, whose answer names the
// asker's process by the gateway's address and so is delivered locally.
// (Two remotes cannot run in one process, see Gateway; the gRPC leg
// between two gateways is covered by cloud/server's split-process test and
// test/cloudsim's TestTwoCloudsShareRedis.)
func TestGatewayInbound(t *testing.T) {
	r := NewRouter(nil)
	asSys := twoServices(t, r)
	gw, err := StartGateway(supervise.New("gateway", nil), "127.0.0.1:0", r, testCredentials(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := gw.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if r.Addr() != gw.Addr() || gw.Addr() == LocalProcess {
		t.Fatalf("router address %q, gateway %q", r.Addr(), gw.Addr())
	}
	here := gw.Addr()
	roundTripBy(t, asSys, "tx-1", func(self *actor.PID, req []byte) error {
		// What Link.Request would send to another process, addressed to ours.
		return gw.send(RootOf(here, NMS), &Message{Frame: req, ReplyTo: Ref{Process: here, Service: AS, ID: self.GetId()}})
	})
	if st := r.Stats(); st.Inbound != 1 || st.Local != 2 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Frames the gateway refuses: garbage, and a reply address without a
	// process (its answer would be misrouted here).
	bad, _ := encodeRoute(RootOf("", NMS), &Message{Frame: []byte{0}, ReplyTo: Ref{Service: AS, ID: "as/x"}})
	for _, b := range [][]byte{{0xff}, bad} {
		gw.sys.Root().Send(gw.sys.Actors().NewLocalPID(GatewayID), wrapperspb.Bytes(b))
	}
	for r.Stats().Dropped != 2 {
		goruntime.Gosched()
	}
	if err := gw.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Link(AS).Send(RootOf("10.9.9.9:1", NMS), []byte{0}); !errors.Is(err, ErrGatewayClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

func TestRouteCodec(t *testing.T) {
	long := string(make([]byte, 256))
	for _, c := range []struct {
		name string
		to   Ref
		m    Message
		ok   bool
	}{
		{"request", RootOf("", NMS), Message{Frame: []byte{0, 1, 2}, ReplyTo: Ref{Process: "127.0.0.1:7410", Service: AS, ID: "as/tx-1"}}, true},
		{"no reply", Ref{Service: TRS, ID: "trs"}, Message{Frame: []byte{9}}, true},
		{"empty frame", RootOf("", NMS), Message{}, true},
		{"long id", Ref{Service: NMS, ID: long}, Message{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := encodeRoute(c.to, &c.m)
			if (err == nil) != c.ok {
				t.Fatalf("encode: %v", err)
			}
			if !c.ok {
				return
			}
			to, m, err := decodeRoute(b)
			if err != nil {
				t.Fatal(err)
			}
			want := Ref{Service: c.to.Service, ID: c.to.ID} // the process is the receiver
			if to != want || m.ReplyTo != c.m.ReplyTo || string(m.Frame) != string(c.m.Frame) {
				t.Fatalf("decoded %v %+v", to, m)
			}
		})
	}
	for i, b := range [][]byte{nil, {0}, {2, 0}, {routeVersion}, {routeVersion, 3, 'n', 'm'}, {routeVersion, 0, 0, 0, 0, 0}} {
		if _, _, err := decodeRoute(b); !errors.Is(err, ErrFrame) {
			t.Errorf("case %d (%x): %v", i, b, err)
		}
	}
}

func FuzzDecodeRoute(f *testing.F) {
	b, _ := encodeRoute(RootOf("", NMS), &Message{Frame: []byte{0}, ReplyTo: Ref{Process: "h:" + strconv.Itoa(1), Service: AS, ID: "as/tx"}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		to, m, err := decodeRoute(b)
		if err == nil && (to.Service == "" || to.ID == "" || m == nil) {
			t.Fatalf("accepted %x as %v %+v", b, to, m)
		}
	})
}

// TestGatewayPortTaken: a taken port is an error, not protoactor's panic,
// and the gateway's system is shut down with it (goleak checks).
func TestGatewayPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := NewRouter(nil)
	if _, err := StartGateway(supervise.New("gateway", nil), l.Addr().String(), r, testCredentials(t)); err == nil {
		t.Fatal("gateway started on a taken port")
	}
	if r.Addr() != LocalProcess {
		t.Fatalf("router address %q after a failed gateway", r.Addr())
	}
}
