package pki

import (
	"errors"
	"fmt"
)

// CRLAssembly puts a deny list back together from the chunks it travels
// in (messages.DenyList): every chunk but the last is chunk bytes long and
// starts at a multiple of it. It holds one list at a time, the
// highest-numbered one offered; a chunk of an older list is ignored, one of
// a newer list starts over. Memory is bounded by MaxCRLLen. It checks no
// signature: the caller offers the whole DER to a CRLState, which does.
// Not safe for concurrent use (one actor owns it).
type CRLAssembly struct {
	chunk  int
	number uint64
	buf    []byte
	have   []bool // by chunk index
	left   int    // chunks still missing
}

// NewCRLAssembly makes an assembly for chunks of the given size.
func NewCRLAssembly(chunk int) *CRLAssembly { return &CRLAssembly{chunk: chunk} }

// ErrCRLChunk: a chunk that does not fit the list it claims to be part of.
var ErrCRLChunk = errors.New("pki: deny list chunk does not fit")

// Add takes the chunk at offset of list number, total bytes long. Once the
// last missing chunk is in it returns the whole DER (the assembly then
// forgets it); before, nil. Duplicates are harmless.
func (a *CRLAssembly) Add(number uint64, offset, total int, data []byte) ([]byte, error) {
	if total <= 0 || total > MaxCRLLen || offset < 0 || offset >= total || offset%a.chunk != 0 ||
		len(data) != min(a.chunk, total-offset) {
		return nil, fmt.Errorf("%w: %d bytes at %d of %d", ErrCRLChunk, len(data), offset, total)
	}
	switch {
	case number < a.number:
		return nil, nil // an older list's: a newer one is being put together
	case number > a.number || a.buf == nil || len(a.buf) != total:
		n := (total + a.chunk - 1) / a.chunk
		a.number, a.buf, a.have, a.left = number, make([]byte, total), make([]bool, n), n
	}
	i := offset / a.chunk
	if a.have[i] {
		return nil, nil
	}
	copy(a.buf[offset:], data)
	a.have[i] = true
	if a.left--; a.left > 0 {
		return nil, nil
	}
	der := a.buf
	a.buf, a.have = nil, nil
	return der, nil
}
