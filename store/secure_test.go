package store_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/signald-dev/signald/internal/dsn"
	"github.com/signald-dev/signald/internal/dsn/dsntest"
	"github.com/signald-dev/signald/store"
)

func clickHouseAddr(t *testing.T) string {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 runs them against real ClickHouse")
	}
	addr := os.Getenv("SIGNALD_CLICKHOUSE_ADDR")
	if addr == "" {
		t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_CLICKHOUSE_ADDR is empty")
	}
	return addr
}

// tlsProxy terminates TLS on a loopback port and forwards the plain bytes to
// target: the test engine (chDB) serves no TLS itself, so this stands in for
// a server's secure native port.
func tlsProxy(t *testing.T, cfg *tls.Config, target string) string {
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{})
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); close(done) }()
				io.Copy(c, u)
				c.Close()
				<-done
			}()
		}
	}()
	return l.Addr().String()
}

func openSecure(t *testing.T, o store.ClickHouseOptions) (*store.ClickHouse, error) {
	t.Helper()
	o.Database = fmt.Sprintf("sdtest_tls_%d", rand.Uint32())
	o.DialTimeout = 5 * time.Second
	c, err := store.OpenClickHouse(context.Background(), o, nil, nil)
	if err == nil {
		t.Cleanup(func() {
			c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+o.Database)
			c.Close()
		})
	}
	return c, err
}

func TestClickHouseTLS(t *testing.T) {
	target := clickHouseAddr(t)
	certs := dsntest.NewCerts(t)
	server := certs.Server.Clone()
	server.ClientAuth = tls.NoClientCert
	addr := tlsProxy(t, server, target)
	cfg, err := dsn.TLS{CA: certs.CA}.Config("clickhouse")
	if err != nil {
		t.Fatal(err)
	}
	c, err := openSecure(t, store.ClickHouseOptions{Addr: addr, TLS: cfg})
	if err != nil {
		t.Fatalf("over TLS with the CA: %v", err)
	}
	// Open created the database and tables through the proxy; one more
	// statement checks the connection stays usable.
	if err := c.Exec(context.Background(), "DROP TABLE IF EXISTS nothing_here"); err != nil {
		t.Fatal(err)
	}

	other, err := dsn.TLS{CA: dsntest.NewCerts(t).CA}.Config("clickhouse")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openSecure(t, store.ClickHouseOptions{Addr: addr, TLS: other}); !dsn.IsTLSVerify(err) {
		t.Fatalf("another CA: %v, want a verification failure", err)
	}
}

func TestClickHouseTLSClientCert(t *testing.T) {
	target := clickHouseAddr(t)
	certs := dsntest.NewCerts(t)
	addr := tlsProxy(t, certs.Server, target)
	cfg, err := dsn.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}.Config("clickhouse")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openSecure(t, store.ClickHouseOptions{Addr: addr, TLS: cfg}); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	cfg, _ = dsn.TLS{CA: certs.CA}.Config("clickhouse")
	if _, err := openSecure(t, store.ClickHouseOptions{Addr: addr, TLS: cfg}); err == nil {
		t.Fatal("without a client certificate: opened")
	}
}

// TestClickHouseRefusedCredentials: the server's refusal codes become
// ErrAuth, without the password in the message. The classification is
// tested on the exceptions themselves: the shared test engine (chDB) aborts
// on a refused login, so no test refuses one there.
func TestClickHouseRefusedCredentials(t *testing.T) {
	for _, code := range []proto.Error{proto.ErrAuthenticationFailed, proto.ErrRequiredPassword, proto.ErrWrongPassword} {
		err := store.DialErr("127.0.0.1:9440", &ch.Exception{Code: code, Name: "DB::Exception", Message: "Authentication failed"})
		if !errors.Is(err, store.ErrAuth) {
			t.Errorf("code %d: %v, want ErrAuth", code, err)
		}
	}
	if err := store.DialErr("127.0.0.1:9440", &ch.Exception{Code: proto.ErrTimeoutExceeded}); errors.Is(err, store.ErrAuth) {
		t.Errorf("a timeout classified as refused credentials: %v", err)
	}
}
