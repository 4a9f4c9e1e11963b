package httpproxy

import (
	"bytes"
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"

	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 30 * 24 * time.Hour
	// leafRenewal is how long before expiry a cached leaf is replaced, so
	// that no handshake hands out a certificate about to lapse.
	leafRenewal = 24 * time.Hour
	// leafCacheSize bounds the leaf cache; an agent talks to few hosts, and
	// a leaf costs about a millisecond to issue again.
	leafCacheSize = 1024
)

// CA is the local certificate authority that signs leaf certificates for
// intercepted hosts. It is safe for concurrent use.
type CA struct {
	cert     *x509.Certificate
	certPEM  []byte
	key      *ecdsa.PrivateKey
	certPath string

	mu       sync.Mutex
	lru      *list.List // of *leafEntry, most recently used first
	cache    map[string]*list.Element
	inflight map[string]*leafCall
	max      int
	issued   atomic.Int64 // leaves generated, for tests
	now      func() time.Time
}

type leafEntry struct {
	host string
	cert *tls.Certificate
}

// leafCall is one leaf being issued; concurrent first requests for the same
// host wait on it instead of issuing their own.
type leafCall struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// LoadOrCreateCA loads the CA kept in dir (ca.pem and ca-key.pem) or, when
// neither file exists, creates one: an ECDSA P-256 key valid for ten
// years. The directory is made private (0700) and the key file is written
// with mode 0600; a key file readable by others is refused.
func LoadOrCreateCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating ca directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting ca directory: %w", err)
	}
	certPath := filepath.Join(dir, caCertFile)
	keyPath := filepath.Join(dir, caKeyFile)
	// A concurrent tf process may be creating the CA at the same moment:
	// wait a little for its files before calling the state broken.
	for attempt := 0; ; attempt++ {
		ca, err := loadCA(certPath, keyPath)
		if err == nil {
			return ca, nil
		}
		if errors.Is(err, errNoCA) {
			ca, err = createCA(dir, certPath, keyPath)
			if !errors.Is(err, fs.ErrExist) {
				return ca, err
			}
			continue
		}
		if errors.Is(err, errIncompleteCA) && attempt < 40 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return nil, err
	}
}

var (
	errNoCA         = errors.New("no ca")
	errIncompleteCA = errors.New("incomplete ca")
)

func loadCA(certPath, keyPath string) (*CA, error) {
	certPEM, certErr := os.ReadFile(certPath)
	keyInfo, keyErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, errNoCA
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s exists without %s; remove the directory to start over", errIncompleteCA, keyPath, certPath)
	case certErr != nil:
		return nil, fmt.Errorf("reading ca certificate: %w", certErr)
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("ca certificate %s has no key %s; remove the directory to start over", certPath, keyPath)
	case keyErr != nil:
		return nil, fmt.Errorf("reading ca key: %w", keyErr)
	}
	if perm := keyInfo.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ca key %s has mode %#o, want 0600", keyPath, perm)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading ca key: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca certificate %s: %w", certPath, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca key %s: %w", keyPath, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("ca key %s does not match certificate %s", keyPath, certPath)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca certificate %s cannot sign certificates", certPath)
	}
	if now := time.Now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("ca certificate %s expired at %s; remove the directory to create a new one", certPath, cert.NotAfter.Format(time.RFC3339))
	}
	return newCA(cert, certPEM, key, certPath), nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return cert, nil
}

func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return ec, nil
}

// createCA generates a CA and publishes it: the key is linked into place
// first (failing with fs.ErrExist when another process won the race), the
// certificate second, so a reader never sees a certificate without its key.
func createCA(dir, certPath, keyPath string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ca key: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown host"
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject: pkix.Name{
			CommonName:   fmt.Sprintf("tf local interception CA (%s)", host),
			Organization: []string{"tf"},
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new ca certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding ca key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	tmpKey, err := writeTemp(dir, "ca-key-*.tmp", keyPEM, 0o600)
	if err != nil {
		return nil, fmt.Errorf("writing ca key: %w", err)
	}
	defer os.Remove(tmpKey)
	tmpCert, err := writeTemp(dir, "ca-*.tmp", certPEM, 0o644)
	if err != nil {
		return nil, fmt.Errorf("writing ca certificate: %w", err)
	}
	defer os.Remove(tmpCert)
	if err := os.Link(tmpKey, keyPath); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("installing ca key: %w", err)
	}
	if err := os.Rename(tmpCert, certPath); err != nil {
		return nil, fmt.Errorf("installing ca certificate: %w", err)
	}
	return newCA(cert, certPEM, key, certPath), nil
}

func writeTemp(dir, pattern string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

func newCA(cert *x509.Certificate, certPEM []byte, key *ecdsa.PrivateKey, certPath string) *CA {
	return &CA{
		cert:     cert,
		certPEM:  certPEM,
		key:      key,
		certPath: certPath,
		lru:      list.New(),
		cache:    make(map[string]*list.Element),
		inflight: make(map[string]*leafCall),
		max:      leafCacheSize,
		now:      time.Now,
	}
}

func randomSerial() *big.Int {
	// 128 random bits; crypto/rand.Int does not fail with the system source.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(fmt.Sprintf("httpproxy: reading randomness: %v", err))
	}
	return n.Add(n, big.NewInt(1))
}

// CertPEM returns the CA certificate in PEM form, for clients to trust.
func (c *CA) CertPEM() []byte { return bytes.Clone(c.certPEM) }

// CertPath returns the path of the CA certificate file.
func (c *CA) CertPath() string { return c.certPath }

// Certificate returns the parsed CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Leaf returns a certificate for host (a DNS name or IP address, without
// port) signed by the CA. Leaves are cached; concurrent first requests for
// a host share one generation.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	name, ip, err := canonicalHost(host)
	if err != nil {
		return nil, fmt.Errorf("issuing leaf: %w", err)
	}
	now := c.now()
	c.mu.Lock()
	if e, ok := c.cache[name]; ok {
		ent := e.Value.(*leafEntry)
		if now.Add(leafRenewal).Before(ent.cert.Leaf.NotAfter) {
			c.lru.MoveToFront(e)
			c.mu.Unlock()
			return ent.cert, nil
		}
		c.lru.Remove(e)
		delete(c.cache, name)
	}
	if call, ok := c.inflight[name]; ok {
		c.mu.Unlock()
		<-call.done
		return call.cert, call.err
	}
	call := &leafCall{done: make(chan struct{})}
	c.inflight[name] = call
	c.mu.Unlock()

	call.cert, call.err = c.issue(name, ip, now)

	c.mu.Lock()
	delete(c.inflight, name)
	if call.err == nil {
		c.cache[name] = c.lru.PushFront(&leafEntry{host: name, cert: call.cert})
		for c.lru.Len() > c.max {
			old := c.lru.Back()
			c.lru.Remove(old)
			delete(c.cache, old.Value.(*leafEntry).host)
		}
	}
	c.mu.Unlock()
	close(call.done)
	return call.cert, call.err
}

func (c *CA) issue(host string, ip netip.Addr, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating leaf key: %w", err)
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if len(host) <= 64 { // the X.509 upper bound of a common name
		tmpl.Subject = pkix.Name{CommonName: host}
	}
	if ip.IsValid() {
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), crypto.Signer(c.key))
	if err != nil {
		return nil, fmt.Errorf("signing leaf for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing leaf for %s: %w", host, err)
	}
	c.issued.Add(1)
	return &tls.Certificate{
		Certificate: [][]byte{der, c.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}
