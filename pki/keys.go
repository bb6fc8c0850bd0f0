package pki

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/curve25519"
)

// Keypair is a Noise static key (X25519).
type Keypair struct {
	Private, Public [32]byte
}

// GenerateNoiseKeypair makes a fresh X25519 static keypair.
func GenerateNoiseKeypair() (Keypair, error) {
	var kp Keypair
	if _, err := rand.Read(kp.Private[:]); err != nil {
		return Keypair{}, fmt.Errorf("pki: noise key: %w", err)
	}
	return noiseKeypairFrom(kp.Private)
}

func noiseKeypairFrom(priv [32]byte) (Keypair, error) {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return Keypair{}, fmt.Errorf("pki: noise public key: %w", err)
	}
	kp := Keypair{Private: priv}
	copy(kp.Public[:], pub)
	return kp, nil
}

const (
	pemCert       = "CERTIFICATE"
	pemPrivateKey = "PRIVATE KEY"
)

// marshalEd25519 and marshalX25519 write keys as PKCS #8, the format
// openssl and every X.509 tool read.
func marshalEd25519(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

func marshalX25519(priv [32]byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

func readPEM(path, wantType string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != wantType {
		return nil, fmt.Errorf("%s: no PEM block of type %q", path, wantType)
	}
	return block.Bytes, nil
}

// ReadKeyFile reads an Ed25519 private key (PKCS #8 PEM).
func ReadKeyFile(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, pemPrivateKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: key is %T, want Ed25519", path, k)
	}
	return ek, nil
}

func readX25519(path string) (Keypair, error) {
	der, err := readPEM(path, pemPrivateKey)
	if err != nil {
		return Keypair{}, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return Keypair{}, fmt.Errorf("%s: %w", path, err)
	}
	xk, ok := k.(*ecdh.PrivateKey)
	if !ok || xk.Curve() != ecdh.X25519() {
		return Keypair{}, fmt.Errorf("%s: key is %T, want X25519", path, k)
	}
	var priv [32]byte
	copy(priv[:], xk.Bytes())
	return noiseKeypairFrom(priv)
}

// ReadCertFile reads a PEM certificate; it returns it parsed and as DER.
func ReadCertFile(path string) (*x509.Certificate, []byte, error) {
	der, err := readPEM(path, pemCert)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, der, nil
}

// CertPEM encodes a certificate's DER as PEM.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: der})
}

// WriteNewFiles writes each file into dir, refusing to replace any that exists
// (O_EXCL) so a CA or identity is never overwritten by accident. On failure
// it removes the files it created, leaving no half-written set behind.
func WriteNewFiles(dir string, files []File) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f.Name)); err == nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, f.Name), fs.ErrExist)
		}
	}
	var created []string
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := writeExclusive(p, f.Data, f.Mode); err != nil {
			for _, c := range created {
				os.Remove(c)
			}
			return err
		}
		created = append(created, p)
	}
	return nil
}

// File is one file for WriteNewFiles.
type File struct {
	Name string
	Data []byte
	Mode os.FileMode
}

func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}
