package transport_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/transport"
)

type ok struct {
	identityv1.UnimplementedIdentityServiceServer
}

func (ok) GetJwks(context.Context, *identityv1.GetJwksRequest) (*identityv1.Jwks, error) {
	return &identityv1.Jwks{}, nil
}

func serve(t *testing.T, sec transport.Security) string {
	t.Helper()
	so, err := sec.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcserver.New(grpcserver.Options{Unary: []grpc.UnaryServerInterceptor{sec.Unary()}, Stream: []grpc.StreamServerInterceptor{sec.Stream()}, ServerOptions: so})
	identityv1.RegisterIdentityServiceServer(srv, ok{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, lis); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String()
}

func call(t *testing.T, sec transport.Security, addr string) (error, error) {
	t.Helper()
	conn, err := sec.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, callErr := identityv1.NewIdentityServiceClient(conn).GetJwks(ctx, &identityv1.GetJwksRequest{})
	_, healthErr := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return callErr, healthErr
}

func TestServiceTokenIsRequired(t *testing.T) {
	addr := serve(t, transport.Security{ServiceToken: "s3cret-token"})
	if callErr, healthErr := call(t, transport.Security{ServiceToken: "s3cret-token"}, addr); callErr != nil || healthErr != nil {
		t.Fatalf("with the token: %v %v", callErr, healthErr)
	}
	callErr, healthErr := call(t, transport.Security{}, addr)
	if status.Code(callErr) != codes.Unauthenticated || grpcserver.ReasonOf(callErr) != "SERVICE_TOKEN_REQUIRED" {
		t.Fatalf("without the token: %v", callErr)
	}
	if healthErr != nil {
		t.Fatalf("health checks need no token: %v", healthErr)
	}
	if callErr, _ := call(t, transport.Security{ServiceToken: "wrong"}, addr); status.Code(callErr) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", callErr)
	}
}

// writeCert writes a certificate and key signed by ca (or self-signed when ca is nil).
func writeCert(t *testing.T, dir, name string, isCA bool, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", true, nil, nil)
	writeCert(t, dir, "server", false, ca, caKey)
	writeCert(t, dir, "client", false, ca, caKey)
	p := func(n string) string { return filepath.Join(dir, n) }
	addr := serve(t, transport.Security{CertFile: p("server.crt"), KeyFile: p("server.key"), CAFile: p("ca.crt"), ServiceToken: "tok"})
	if callErr, _ := call(t, transport.Security{CertFile: p("client.crt"), KeyFile: p("client.key"), CAFile: p("ca.crt"), ServiceToken: "tok"}, addr); callErr != nil {
		t.Fatalf("mTLS client: %v", callErr)
	}
	if callErr, _ := call(t, transport.Security{CAFile: p("ca.crt"), ServiceToken: "tok"}, addr); callErr == nil {
		t.Fatal("a client without a certificate got through")
	}
	if callErr, _ := call(t, transport.Security{ServiceToken: "tok"}, addr); callErr == nil {
		t.Fatal("a plaintext client got through a TLS server")
	}
}

func TestRequireFailsClosedWithoutAToken(t *testing.T) {
	if err := (transport.Security{}).Require(); !errors.Is(err, transport.ErrNoServiceToken) ||
		!strings.Contains(err.Error(), "LETHE_SERVICE_TOKEN") || !strings.Contains(err.Error(), "LETHE_INSECURE_DEV") {
		t.Fatalf("no token, no flag: %v", err)
	}
	if err := (transport.Security{InsecureDev: true}).Require(); err != nil {
		t.Fatalf("explicit insecure dev mode: %v", err)
	}
	if err := (transport.Security{ServiceToken: "s3cret"}).Require(); err != nil {
		t.Fatalf("with a token: %v", err)
	}
}
