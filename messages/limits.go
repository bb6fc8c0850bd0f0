package messages

// Size limits. Decoders check them before allocating, so no input can make a
// decoder allocate more than a small multiple of these numbers.
const (
	// MaxPacket is the largest UDP payload we build or accept (the largest
	// datagram a UDP length field can describe). Receive buffers are this big.
	MaxPacket = 65535

	// AEADOverhead is the authentication tag every data and signaling
	// ciphertext carries (AES-256-GCM, ChaCha20-Poly1305 and XChaCha20-Poly1305
	// all use 16 bytes).
	AEADOverhead = 16

	// MaxInner is the largest inner (IP) packet that fits in a data packet on
	// any path, including a relayed one.
	MaxInner = MaxPacket - RelayHeaderLen - DataHeaderLen - AEADOverhead

	// MaxEnvelopeLen bounds an encoded signaling envelope (it must hold a
	// LoginRequest with a certificate of MaxCertLen).
	MaxEnvelopeLen = 16 << 10

	// MaxNameLen bounds FQDNs and service names (the DNS limit).
	MaxNameLen = 253
	// MaxTextLen bounds free-text strings (software version, error message, serial).
	MaxTextLen = 1024
	// LoginMinLen is the least size of a login packet and of its
	// LoginConfirm (QUIC's Initial size, which fits every IPv6 path): the AS
	// answers neither with more bytes than it received, and its answers
	// fit in this many.
	LoginMinLen = 1200
	// MaxPadLen bounds the padding fields of login bodies.
	MaxPadLen = LoginMinLen
	// MaxCertLen bounds a DER certificate.
	MaxCertLen = 8 << 10
	// MaxAddrs bounds every list of addresses.
	MaxAddrs = 16
)
