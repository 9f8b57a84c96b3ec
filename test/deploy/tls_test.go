package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestTLS: a redis-server that takes TLS connections with client
// certificates (mutual TLS; certificates made here with crypto/x509), and
// two nodes whose clients have a TLSConfig: caches and bus work, and every
// connection of theirs, pub/sub included, is a TLS one.
func TestTLS(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	pki := newPKI(t)
	tlsPort := freeLoopbackPort(t)
	srv := redistest.NewServer(t,
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", pki.serverCert, "--tls-key-file", pki.serverKey,
		"--tls-ca-cert-file", pki.caCert,
		"--tls-auth-clients", "yes")
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))

	// Without a certificate, the TLS port refuses; in plain text, it does
	// not speak Redis.
	noCert := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: &tls.Config{RootCAs: pki.pool}, MaxRetries: -1})
	defer noCert.Close()
	if err := noCert.Ping(ctx).Err(); err == nil {
		t.Fatal("a client without a certificate was let in: the server does not check client certificates")
	}
	plain := redis.NewClient(&redis.Options{Addr: tlsAddr, MaxRetries: -1, ReadTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("the TLS port answered a plain-text PING")
	}

	setup := newSetup(t)
	newClient := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: &tls.Config{
			RootCAs:      pki.pool,
			Certificates: []tls.Certificate{pki.client},
			MinVersion:   tls.VersionTLS12,
		}})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, b := setup.node(t, newClient()), setup.node(t, newClient())
	exercise(t, a, b)

	// Every client connection but the admin's came in on the TLS port,
	// among them the buses' subscriptions (polled: a bus that doubts its
	// subscription renews it, and may be between two when we look).
	admin := srv.Client(t)
	var onTLS, subscribers int
	var list string
	eventually(t, 10*time.Second, "both buses' subscriptions on the TLS port", func() bool {
		var err error
		if list, err = admin.ClientList(ctx).Result(); err != nil {
			t.Fatal(err)
		}
		onTLS, subscribers = 0, 0
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			if strings.Contains(line, " cmd=client|list ") {
				continue // the admin connection, on the plain port
			}
			if !strings.Contains(line, " laddr="+tlsAddr+" ") {
				t.Fatalf("a connection not on the TLS port: %s", line)
			}
			onTLS++
			if !strings.Contains(line, " sub=0 ") || !strings.Contains(line, " ssub=0 ") {
				subscribers++
			}
		}
		return subscribers >= 2
	})
	t.Logf("%d connections on the TLS port, %d of them pub/sub", onTLS, subscribers)
}

// pki is a certificate authority and the certificates it signed, for a
// server on 127.0.0.1 and for a client.
type pki struct {
	caCert, serverCert, serverKey string // PEM files
	pool                          *x509.CertPool
	client                        tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tiercache test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips ...net.IP) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caCert = writePEM(t, dir, "ca.crt", "CERTIFICATE", caDER)
	srvDER, srvKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	p.serverCert = writePEM(t, dir, "server.crt", "CERTIFICATE", srvDER)
	p.serverKey = writePEM(t, dir, "server.key", "EC PRIVATE KEY", marshalKey(t, srvKey))
	cliDER, cliKey := issue(3, "tiercache test client", x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func marshalKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeLoopbackPort returns a loopback port the kernel just handed out and
// took back: free, and unlikely to be handed out again within the moment
// the server takes to bind it.
func freeLoopbackPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
