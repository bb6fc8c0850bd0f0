package messages

import (
	"bytes"
	"io"
	"math"
	"net/netip"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Wire forms used inside msgpack (all bodies are positional arrays):
//
//	integers, bools  msgpack ints (compact), bools
//	strings          msgpack str
//	netip.Addr       bin of 0 (zero Addr), 4 or 16 bytes
//	netip.AddrPort   bin of 0 (zero), 6 (IPv4 + port) or 18 (IPv6 + port) bytes
//	netip.Prefix     bin of 0 (zero), 5 or 17 bytes (address + prefix length)
//	[N]byte          bin of exactly N bytes
//	lists            msgpack array
//	optional struct  nil or the struct's array

// wr is a sticky-error msgpack writer: the codecs write every field and check
// the error once.
type wr struct {
	e   *msgpack.Encoder
	err error
}

func (w *wr) arrayLen(n int) {
	if w.err == nil {
		w.err = w.e.EncodeArrayLen(n)
	}
}

func (w *wr) uint(v uint64) {
	if w.err == nil {
		w.err = w.e.EncodeUint(v)
	}
}

func (w *wr) int(v int64) {
	if w.err == nil {
		w.err = w.e.EncodeInt(v)
	}
}

func (w *wr) bool(v bool) {
	if w.err == nil {
		w.err = w.e.EncodeBool(v)
	}
}

func (w *wr) str(s string) {
	if w.err == nil {
		w.err = w.e.EncodeString(s)
	}
}

func (w *wr) nil() {
	if w.err == nil {
		w.err = w.e.EncodeNil()
	}
}

// bin writes p as a msgpack bin without letting p escape, so callers can pass
// slices of stack arrays and encode without allocating.
func (w *wr) bin(p []byte) {
	if w.err != nil {
		return
	}
	if w.err = w.e.EncodeBytesLen(len(p)); w.err != nil {
		return
	}
	w.err = writeRaw(w.e.Writer(), p)
}

// writeRaw writes p to the encoder's writer. A *bytes.Buffer (what our
// Encoder and msgpack.Marshal use) is written directly; the concrete call lets
// escape analysis keep p on the caller's stack. Other writers get a copy.
func writeRaw(w io.Writer, p []byte) error {
	switch w := w.(type) {
	case *bytes.Buffer:
		w.Write(p)
		return nil
	case io.ByteWriter:
		for _, c := range p {
			if err := w.WriteByte(c); err != nil {
				return err
			}
		}
		return nil
	default:
		_, err := w.Write(bytes.Clone(p))
		return err
	}
}

func (w *wr) addr(a netip.Addr) {
	switch {
	case !a.IsValid():
		w.bin(nil)
	case a.Is4():
		b := a.As4()
		w.bin(b[:])
	default:
		b := a.As16()
		w.bin(b[:])
	}
}

func (w *wr) addrPort(ap netip.AddrPort) {
	var b [18]byte
	a := ap.Addr()
	switch {
	case !a.IsValid():
		w.bin(nil)
	case a.Is4():
		a4 := a.As4()
		copy(b[:], a4[:])
		b[4], b[5] = byte(ap.Port()>>8), byte(ap.Port())
		w.bin(b[:6])
	default:
		a16 := a.As16()
		copy(b[:], a16[:])
		b[16], b[17] = byte(ap.Port()>>8), byte(ap.Port())
		w.bin(b[:18])
	}
}

func (w *wr) addrPorts(list []netip.AddrPort) {
	w.arrayLen(len(list))
	for _, ap := range list {
		w.addrPort(ap)
	}
}

func (w *wr) prefix(p netip.Prefix) {
	var b [17]byte
	a := p.Addr()
	switch {
	case !p.IsValid():
		w.bin(nil)
	case a.Is4():
		a4 := a.As4()
		copy(b[:], a4[:])
		b[4] = byte(p.Bits())
		w.bin(b[:5])
	default:
		a16 := a.As16()
		copy(b[:], a16[:])
		b[16] = byte(p.Bits())
		w.bin(b[:17])
	}
}

// rd is a sticky-error msgpack reader that enforces limits before it
// allocates. After the first failure every method returns a zero value and
// err keeps the first *FieldError.
type rd struct {
	d   *msgpack.Decoder
	msg string // message name for errors
	err error
}

func (r *rd) fail(field string, err error) {
	if r.err == nil {
		r.err = &FieldError{Msg: r.msg, Field: field, Err: classify(err)}
	}
}

// arrayLen requires an array of exactly n elements: the positional layout is
// the contract, and the envelope version is how it changes.
func (r *rd) arrayLen(n int) {
	if r.err != nil {
		return
	}
	got, err := r.d.DecodeArrayLen()
	if err != nil {
		r.fail("", err)
		return
	}
	if got != n && !(got == -1 && n == 0) { // nil stands for an empty body
		r.fail("", ErrMalformed)
	}
}

// isNil consumes a nil if one is next.
func (r *rd) isNil(field string) bool {
	if r.err != nil {
		return false
	}
	c, err := r.d.PeekCode()
	if err != nil {
		r.fail(field, err)
		return false
	}
	if c != msgpcode.Nil {
		return false
	}
	if err := r.d.DecodeNil(); err != nil {
		r.fail(field, err)
	}
	return true
}

// uint reads an unsigned integer no larger than max.
func (r *rd) uint(field string, max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	// Read as int64 so a negative number cannot wrap into a large unsigned one.
	v, err := r.d.DecodeInt64()
	if err != nil {
		r.fail(field, err)
		return 0
	}
	if v < 0 || uint64(v) > max {
		r.fail(field, ErrInvalid)
		return 0
	}
	return uint64(v)
}

func (r *rd) u8(field string) uint8   { return uint8(r.uint(field, math.MaxUint8)) }
func (r *rd) u16(field string) uint16 { return uint16(r.uint(field, math.MaxUint16)) }
func (r *rd) u32(field string) uint32 { return uint32(r.uint(field, math.MaxUint32)) }

func (r *rd) int(field string) int64 {
	if r.err != nil {
		return 0
	}
	v, err := r.d.DecodeInt64()
	if err != nil {
		r.fail(field, err)
	}
	return v
}

func (r *rd) bool(field string) bool {
	if r.err != nil {
		return false
	}
	v, err := r.d.DecodeBool()
	if err != nil {
		r.fail(field, err)
	}
	return v
}

// rawLen reads the header of a str (wantStr) or bin and checks its length
// against max and against what is left of the input, before anything is
// allocated. It returns -1 on failure.
func (r *rd) rawLen(field string, wantStr bool, max int) int {
	if r.err != nil {
		return -1
	}
	c, err := r.d.PeekCode()
	if err != nil {
		r.fail(field, err)
		return -1
	}
	switch {
	case c == msgpcode.Nil:
	case wantStr && msgpcode.IsString(c):
	case !wantStr && msgpcode.IsBin(c):
	default:
		r.fail(field, ErrMalformed)
		return -1
	}
	n, err := r.d.DecodeBytesLen()
	if err != nil {
		r.fail(field, err)
		return -1
	}
	if n < 0 { // nil
		return 0
	}
	if n > max {
		r.fail(field, ErrTooLarge)
		return -1
	}
	if left, ok := r.d.Buffered().(interface{ Len() int }); ok && n > left.Len() {
		r.fail(field, ErrTruncated)
		return -1
	}
	return n
}

// read reads exactly len(p) raw bytes. Over a *bytes.Reader (what our own
// entry points use) it calls Read on the concrete type, so p does not escape
// and callers can read into stack arrays.
func (r *rd) read(field string, p []byte) {
	if r.err != nil || len(p) == 0 {
		return
	}
	if br, ok := r.d.Buffered().(*bytes.Reader); ok {
		// rawLen checked len(p) against br.Len(), so one Read fills p.
		if n, _ := br.Read(p); n != len(p) {
			r.fail(field, ErrTruncated)
		}
		return
	}
	tmp := make([]byte, len(p)) // other readers: copy so that p stays on the stack
	if err := r.d.ReadFull(tmp); err != nil {
		r.fail(field, err)
		return
	}
	copy(p, tmp)
}

func (r *rd) bytes(field string, max int) []byte {
	n := r.rawLen(field, false, max)
	if n <= 0 {
		return nil
	}
	p := make([]byte, n)
	r.read(field, p)
	return p
}

// text reads a string of at most max bytes that must be valid UTF-8.
func (r *rd) text(field string, max int) string {
	n := r.rawLen(field, true, max)
	if n <= 0 {
		return ""
	}
	var buf [64]byte // most strings are short: read them on the stack, allocate once
	var p []byte
	if n <= len(buf) {
		p = buf[:n]
	} else {
		p = make([]byte, n)
	}
	r.read(field, p)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(p) {
		r.fail(field, ErrInvalid)
		return ""
	}
	return string(p)
}

// name reads an optional FQDN or service name (empty, or ValidName).
func (r *rd) name(field string) string {
	s := r.text(field, MaxNameLen)
	if s != "" && !ValidName(s) {
		r.fail(field, ErrInvalid)
		return ""
	}
	return s
}

// fqdn reads a required name.
func (r *rd) fqdn(field string) string {
	s := r.name(field)
	if s == "" {
		r.fail(field, ErrInvalid)
	}
	return s
}

// fixed reads a bin of exactly len(p) bytes into p.
func (r *rd) fixed(field string, p []byte) {
	n := r.rawLen(field, false, len(p))
	if n < 0 {
		return
	}
	if n != len(p) {
		r.fail(field, ErrInvalid)
		return
	}
	r.read(field, p)
}

func (r *rd) addr(field string) netip.Addr {
	var b [16]byte
	n := r.rawLen(field, false, 16)
	switch n {
	case -1, 0:
		return netip.Addr{}
	case 4:
		r.read(field, b[:4])
		return netip.AddrFrom4([4]byte(b[:4]))
	case 16:
		r.read(field, b[:])
		return netip.AddrFrom16(b)
	}
	r.fail(field, ErrInvalid)
	return netip.Addr{}
}

// addrPort reads an AddrPort; a non-zero one needs a non-zero port.
func (r *rd) addrPort(field string) netip.AddrPort {
	var b [18]byte
	var a netip.Addr
	n := r.rawLen(field, false, 18)
	switch n {
	case -1, 0:
		return netip.AddrPort{}
	case 6:
		r.read(field, b[:6])
		a = netip.AddrFrom4([4]byte(b[:4]))
	case 18:
		r.read(field, b[:])
		a = netip.AddrFrom16([16]byte(b[:16]))
	default:
		r.fail(field, ErrInvalid)
		return netip.AddrPort{}
	}
	port := uint16(b[n-2])<<8 | uint16(b[n-1])
	if r.err != nil {
		return netip.AddrPort{}
	}
	if port == 0 {
		r.fail(field, ErrInvalid)
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, port)
}

// addrPorts reads a list of at most MaxAddrs valid (non-zero) AddrPorts.
func (r *rd) addrPorts(field string) []netip.AddrPort {
	if r.err != nil || r.isNil(field) {
		return nil
	}
	n, err := r.d.DecodeArrayLen()
	if err != nil {
		r.fail(field, err)
		return nil
	}
	if n > MaxAddrs {
		r.fail(field, ErrTooLarge)
		return nil
	}
	if n == 0 {
		return nil
	}
	list := make([]netip.AddrPort, 0, n)
	for range n {
		ap := r.addrPort(field)
		if r.err != nil {
			return nil
		}
		if !ap.IsValid() {
			r.fail(field, ErrInvalid)
			return nil
		}
		list = append(list, ap)
	}
	return list
}

func (r *rd) prefix(field string) netip.Prefix {
	var b [17]byte
	var a netip.Addr
	n := r.rawLen(field, false, 17)
	switch n {
	case -1, 0:
		return netip.Prefix{}
	case 5:
		r.read(field, b[:5])
		a = netip.AddrFrom4([4]byte(b[:4]))
	case 17:
		r.read(field, b[:])
		a = netip.AddrFrom16([16]byte(b[:16]))
	default:
		r.fail(field, ErrInvalid)
		return netip.Prefix{}
	}
	if r.err != nil {
		return netip.Prefix{}
	}
	p := netip.PrefixFrom(a, int(b[n-1]))
	if !p.IsValid() || p != p.Masked() {
		r.fail(field, ErrInvalid)
		return netip.Prefix{}
	}
	return p
}

// ValidName reports whether s is an acceptable FQDN or service name on the
// wire: at most MaxNameLen bytes of dot-separated labels, each 1-63 bytes of
// ASCII letters, digits, '-' or '_', not starting or ending with '-', and no
// trailing dot. Names are compared case-sensitively; callers lower-case them.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return false
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return false
			}
		case c == '_', '0' <= c && c <= '9', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0 && s[len(s)-1] != '-'
}
