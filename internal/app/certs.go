package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DevCertHosts are the names the development server certificate is valid for: the nats
// container on the compose network, and the host's published port.
var DevCertHosts = []string{"nats", "localhost", "127.0.0.1"}

// WriteDevCerts writes a throwaway CA and, signed by it, a server certificate for hosts
// and a client certificate (for `verify: true`), unless dir already has them:
// ca.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem. The CA's key
// is not kept. For trying TLS out; a real deployment brings its own PKI.
//
// The keys are readable by everyone (0644) in a 0755 directory: they are bind-mounted into
// containers whose user (uid 10001) is not the host's.
func WriteDevCerts(dir string, hosts []string) error {
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "jetcheckout development CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(2, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	leaf := func(name string, usage x509.ExtKeyUsage, hosts []string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: "jetcheckout " + name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().AddDate(1, 0, 0),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", keyDER); err != nil {
			return err
		}
		return writePEM(filepath.Join(dir, name+"-cert.pem"), "CERTIFICATE", der)
	}
	if err := leaf("server", x509.ExtKeyUsageServerAuth, hosts); err != nil {
		return err
	}
	if err := leaf("client", x509.ExtKeyUsageClientAuth, nil); err != nil {
		return err
	}
	// Last: its presence says the set is complete.
	return writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
