// Package pki is the overlay's public-key infrastructure as every holder of
// a certificate sees it, node or cloud service: the certificate profile
// (written by Signer, read by the verifier), verification, identities and
// their files, roles, FQDNs and the deny list. It sits below actors/ and
// cloud/, which both import it. The CA itself (the root key's custody, the
// VIP registry, issuing, signing the deny list) is cloud/rootca.
//
// The hierarchy is one level deep: the root CA (Ed25519, self-signed) signs
// every leaf directly. Without intermediates, verification is a signature
// check against one known key plus the policy checks in [Verifier.Verify].
//
// A leaf certificate binds to one FQDN (its CN and only DNS SAN): an Ed25519
// signing key (the certificate's own key), a Noise static key (X25519) used
// for the node-to-node and node-to-cloud handshakes, a role (node, AS, NMS or
// TRS) and, for a node, its VIPs.
//
// # Object identifiers
//
// The Noise key and the roles need OIDs of their own. They live under
// 1.3.6.1.4.1.32473, the private-enterprise arc IANA reserves for
// documentation (RFC 5612): it belongs to no real vendor, so our extensions
// can never be mistaken for someone else's. An operator with a registered
// Private Enterprise Number may move them by changing [OIDArc]; certificates
// issued under the old arc then stop verifying, as they should.
//
//	1.3.6.1.4.1.32473.7801          the CYPHONIC arc ([OIDArc])
//	1.3.6.1.4.1.32473.7801.1.1      extension: Noise static public key,
//	                                DER OCTET STRING of 32 bytes, non-critical
//	1.3.6.1.4.1.32473.7801.2.1      extended key usage: overlay node
//	1.3.6.1.4.1.32473.7801.2.2      extended key usage: AS
//	1.3.6.1.4.1.32473.7801.2.3      extended key usage: NMS
//	1.3.6.1.4.1.32473.7801.2.4      extended key usage: TRS
//
// The Noise key extension is non-critical so that generic X.509 tools can
// still parse and display the certificates; CYPHONIC's verifier requires it.
//
// # Files
//
// A CA directory holds ca.crt, ca.key (0600), issued.json (the VIPs the CA
// has allocated, by FQDN) and revoked.crl (the deny list: an X.509 CRL
// signed by the CA, its CRL number increasing with every revocation). An
// identity directory holds node.crt, node.key (Ed25519, PKCS #8) and
// noise.key (X25519, PKCS #8), keys 0600, whatever the identity's role; a
// node also keeps there the newest deny list it has seen.
//
// # VIPs
//
// A node certificate carries the node's VIPs as IP address SANs, exactly
// one IPv6 and one IPv4 address, allocated by the CA (issued.json) so no
// two certificates share one and a reissued certificate keeps its node's
// pair. They are in the certificate rather than derived from it (a hash of
// the FQDN or key) because 100.64.0.0/10 has 22 bits: by the birthday bound
// two of some 2,000 nodes would already collide. Peers check them at every
// handshake, so a cloud service cannot bind a VIP to another node.
package pki
