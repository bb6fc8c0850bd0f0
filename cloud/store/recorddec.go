package store

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// DecodeMsgpack reads a record without reflection (msgpack.CustomDecoder):
// a tunnel setup decodes two records, and the reflective decoder was most
// of a record read's CPU (issue 14). The format is record's tags, read as
// the reflective decoder reads them: a map (nil: empty) whose unknown keys
// are skipped, missing keys zero, a nil value zero, the last of duplicate
// keys kept. Encoding stays reflective (msgpack.Marshal of record).
func (r *record) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := decodeMapLen(d)
	if err != nil {
		return err
	}
	var kb [4]byte // every key is at most 3 bytes
	for range max(n, 0) {
		key, err := decodeKey(d, kb[:])
		if err != nil {
			return err
		}
		switch string(key) { // no allocation for a switch on a conversion
		case "f":
			r.FQDN, err = d.DecodeString()
		case "v6":
			r.VIP6, err = d.DecodeString()
		case "v4":
			r.VIP4, err = d.DecodeString()
		case "cs":
			r.CertSerial, err = d.DecodeString()
		case "ce":
			r.CertExpiry, err = d.DecodeInt64()
		case "nms":
			r.HomeNMS, err = d.DecodeString()
		case "u":
			r.Updated, err = d.DecodeInt64()
		case "o4":
			r.Observed4, err = d.DecodeString()
		case "o6":
			r.Observed6, err = d.DecodeString()
		case "l":
			r.Locals, err = decodeStrings(d)
		case "n4":
			r.NAT4, err = d.DecodeUint8()
		case "n6":
			r.NAT6, err = d.DecodeUint8()
		case "h4":
			r.HasIPv4, err = d.DecodeBool()
		case "h6":
			r.HasIPv6, err = d.DecodeBool()
		case "s":
			r.Session, err = decodeSessionRecord(d)
		default:
			err = d.Skip()
		}
		if err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
	}
	return nil
}

// decodeMapLen is DecodeMapLen without its leniency for an extension
// header in front, which the reflective decoder refuses.
func decodeMapLen(d *msgpack.Decoder) (int, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 && c != msgpcode.Nil {
		return 0, fmt.Errorf("msgpack: unexpected code=%x decoding map length", c)
	}
	return d.DecodeMapLen()
}

// decodeKey reads a map key into buf when it fits (every known key does)
// and returns it aliasing buf; a longer one is read and returned empty
// (unknown: skipped).
func decodeKey(d *msgpack.Decoder, buf []byte) ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > len(buf) {
		if n > maxRecordLen {
			return nil, fmt.Errorf("key of %d bytes", n)
		}
		return nil, d.ReadFull(make([]byte, n))
	}
	if err := d.ReadFull(buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// decodeStrings reads a string array of at most maxLocals: nil for a msgpack
// nil, and, as the reflective decoder reads it, an empty non-nil slice for
// an empty array (fuzzing found the difference).
func decodeStrings(d *msgpack.Decoder) ([]string, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if n == 0 {
		return []string{}, nil // no allocation
	}
	if n > maxLocals {
		return nil, fmt.Errorf("%d locals", n)
	}
	out := make([]string, n)
	for i := range out {
		if out[i], err = d.DecodeString(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decodeSessionRecord reads a session map (nil: none) by sessionRecord's tags.
func decodeSessionRecord(d *msgpack.Decoder) (*sessionRecord, error) {
	n, err := decodeMapLen(d)
	if err != nil || n < 0 {
		return nil, err
	}
	s := &sessionRecord{}
	var kb [4]byte
	for range n {
		key, err := decodeKey(d, kb[:])
		if err != nil {
			return nil, err
		}
		switch string(key) {
		case "id":
			s.ID, err = d.DecodeUint32()
		case "nc":
			s.NodeToCloud, err = d.DecodeBytes()
		case "cn":
			s.CloudToNode, err = d.DecodeBytes()
		case "e":
			s.Expires, err = d.DecodeInt64()
		default:
			err = d.Skip()
		}
		if err != nil {
			return nil, fmt.Errorf("session key %q: %w", key, err)
		}
	}
	return s, nil
}
