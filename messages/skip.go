package messages

import "encoding/binary"

// maxDepth bounds msgpack nesting in a body; ours nest three deep.
const maxDepth = 16

// skipValue returns the length of the msgpack value at the start of b. It
// reads only b: unlike msgpack's Decoder.Skip, a length field claiming
// gigabytes cannot make it allocate, and nesting is bounded by maxDepth.
func skipValue(b []byte, depth int) (int, error) {
	if len(b) == 0 {
		return 0, ErrTruncated
	}
	if depth > maxDepth {
		return 0, ErrTooLarge
	}
	c := b[0]
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3: // fixint, nil, bool
		return 1, nil
	case c <= 0x8f: // fixmap
		return skipElems(b, 1, 2*int(c&0x0f), depth)
	case c <= 0x9f: // fixarray
		return skipElems(b, 1, int(c&0x0f), depth)
	case c <= 0xbf: // fixstr
		return skipBytes(b, 1, int(c&0x1f))
	}
	switch c {
	case 0xcc, 0xd0: // uint8, int8
		return skipBytes(b, 1, 1)
	case 0xcd, 0xd1:
		return skipBytes(b, 1, 2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return skipBytes(b, 1, 4)
	case 0xcb, 0xcf, 0xd3:
		return skipBytes(b, 1, 8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16: type byte + data
		return skipBytes(b, 2, 1<<(c-0xd4))
	case 0xc4, 0xd9: // bin8, str8
		n, hdr, err := length(b, 1)
		if err != nil {
			return 0, err
		}
		return skipBytes(b, hdr, n)
	case 0xc5, 0xda:
		n, hdr, err := length(b, 2)
		if err != nil {
			return 0, err
		}
		return skipBytes(b, hdr, n)
	case 0xc6, 0xdb:
		n, hdr, err := length(b, 4)
		if err != nil {
			return 0, err
		}
		return skipBytes(b, hdr, n)
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type byte, data
		n, hdr, err := length(b, 1<<(c-0xc7))
		if err != nil {
			return 0, err
		}
		return skipBytes(b, hdr+1, n)
	case 0xdc, 0xde: // array16, map16
		n, hdr, err := length(b, 2)
		if err != nil {
			return 0, err
		}
		if c == 0xde {
			n *= 2
		}
		return skipElems(b, hdr, n, depth)
	case 0xdd, 0xdf: // array32, map32
		n, hdr, err := length(b, 4)
		if err != nil {
			return 0, err
		}
		if c == 0xdf {
			n *= 2
		}
		return skipElems(b, hdr, n, depth)
	}
	return 0, ErrMalformed // 0xc1 is never used
}

// length reads a size-byte big-endian length after the code byte.
func length(b []byte, size int) (n, hdr int, err error) {
	if len(b) < 1+size {
		return 0, 0, ErrTruncated
	}
	switch size {
	case 1:
		n = int(b[1])
	case 2:
		n = int(binary.BigEndian.Uint16(b[1:]))
	default:
		n = int(binary.BigEndian.Uint32(b[1:]))
	}
	return n, 1 + size, nil
}

func skipBytes(b []byte, hdr, n int) (int, error) {
	if n > len(b)-hdr {
		return 0, ErrTruncated
	}
	return hdr + n, nil
}

func skipElems(b []byte, hdr, n, depth int) (int, error) {
	if n > len(b)-hdr { // every element takes at least one byte
		return 0, ErrTruncated
	}
	off := hdr
	for range n {
		m, err := skipValue(b[off:], depth+1)
		if err != nil {
			return 0, err
		}
		off += m
	}
	return off, nil
}
