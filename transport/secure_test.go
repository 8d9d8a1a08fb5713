package transport_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signald-dev/signald/internal/dsn"
	"github.com/signald-dev/signald/internal/dsn/dsntest"
	"github.com/signald-dev/signald/transport"
)

// open connects with o and checks the connection carries streams.
func openAndAdd(t *testing.T, o transport.RedisOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := transport.NewRedis(ctx, o)
	if err != nil {
		t.Fatalf("%+v: %v", o.Addrs, err)
	}
	defer r.Close()
	if _, err := r.Add(ctx, "secure-test", [][]byte{[]byte("x")}); err != nil {
		t.Fatalf("add: %v", err)
	}
}

func openErr(t *testing.T, o transport.RedisOptions) error {
	t.Helper()
	o.DialTimeout = 3 * time.Second
	r, err := transport.NewRedis(context.Background(), o)
	if err == nil {
		r.Close()
		t.Fatalf("%v: opened, want an error", o.Addrs)
	}
	return err
}

func tlsConfig(t *testing.T, f dsn.TLS) *transport.RedisOptions {
	t.Helper()
	cfg, err := f.Config("redis")
	if err != nil {
		t.Fatal(err)
	}
	return &transport.RedisOptions{TLS: cfg}
}

func TestRedisPassword(t *testing.T) {
	addr := dsntest.StartRedis(t, false, "--requirepass", "s3cret")
	openAndAdd(t, transport.RedisOptions{Addrs: []string{addr}, Password: "s3cret"})
	openAndAdd(t, transport.RedisOptions{Addrs: []string{addr}, Username: "default", Password: "s3cret", DB: 3})
	for _, o := range []transport.RedisOptions{
		{Addrs: []string{addr}},                    // NOAUTH
		{Addrs: []string{addr}, Password: "wrong"}, // WRONGPASS
	} {
		err := openErr(t, o)
		if !errors.Is(err, transport.ErrAuth) {
			t.Errorf("password %q: %v, want ErrAuth", o.Password, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q shows the password", err)
		}
	}
}

func TestRedisACLUser(t *testing.T) {
	addr := dsntest.StartRedis(t, false, "--user", "default", "off", "--user", "app", "on", ">apppw", "~*", "&*", "+@all")
	openAndAdd(t, transport.RedisOptions{Addrs: []string{addr}, Username: "app", Password: "apppw"})
	for _, o := range []transport.RedisOptions{
		{Addrs: []string{addr}, Username: "app", Password: "wrong"},
		{Addrs: []string{addr}, Username: "nobody", Password: "apppw"},
		{Addrs: []string{addr}, Password: "apppw"}, // the default user is off
	} {
		if err := openErr(t, o); !errors.Is(err, transport.ErrAuth) {
			t.Errorf("user %q: %v, want ErrAuth", o.Username, err)
		}
	}
}

func TestRedisTLS(t *testing.T) {
	certs := dsntest.NewCerts(t)
	addr := dsntest.StartRedis(t, true, "--tls-cert-file", certs.ServerCert, "--tls-key-file", certs.ServerKey,
		"--tls-ca-cert-file", certs.CA, "--tls-auth-clients", "no", "--requirepass", "tlspw")
	o := tlsConfig(t, dsn.TLS{CA: certs.CA})
	o.Addrs, o.Password = []string{addr}, "tlspw"
	openAndAdd(t, *o)

	// Another CA: the server's certificate does not verify, and it is
	// told apart from a refusal.
	other := dsntest.NewCerts(t)
	o = tlsConfig(t, dsn.TLS{CA: other.CA})
	o.Addrs, o.Password = []string{addr}, "tlspw"
	if err := openErr(t, *o); !dsn.IsTLSVerify(err) {
		t.Errorf("wrong CA: %v, want a verification failure", err)
	}
	// Verification off (tests only) connects whatever the CA.
	o = tlsConfig(t, dsn.TLS{Insecure: true})
	o.Addrs, o.Password = []string{addr}, "tlspw"
	openAndAdd(t, *o)
	// Plain text to the TLS port fails.
	if err := openErr(t, transport.RedisOptions{Addrs: []string{addr}, Password: "tlspw"}); errors.Is(err, transport.ErrAuth) {
		t.Errorf("plain text to TLS: %v, want no ErrAuth", err)
	}
}

func TestRedisTLSClientCert(t *testing.T) {
	certs := dsntest.NewCerts(t)
	addr := dsntest.StartRedis(t, true, "--tls-cert-file", certs.ServerCert, "--tls-key-file", certs.ServerKey,
		"--tls-ca-cert-file", certs.CA, "--tls-auth-clients", "yes")
	o := tlsConfig(t, dsn.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey})
	o.Addrs = []string{addr}
	openAndAdd(t, *o)
	o = tlsConfig(t, dsn.TLS{CA: certs.CA})
	o.Addrs = []string{addr}
	openErr(t, *o)
}

func TestRedisClusterDB(t *testing.T) {
	_, err := transport.NewRedis(context.Background(), transport.RedisOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, DB: 2})
	if err == nil || !strings.Contains(err.Error(), "only database 0") {
		t.Fatalf("cluster with DB 2: %v", err)
	}
}

func TestRedisSentinel(t *testing.T) {
	master := dsntest.StartRedis(t, false, "--requirepass", "mpw")
	sentinel := dsntest.StartSentinel(t, master, "mymaster", "mpw")
	openAndAdd(t, transport.RedisOptions{Addrs: []string{sentinel}, SentinelMaster: "mymaster", Password: "mpw", DB: 1})
	if err := openErr(t, transport.RedisOptions{Addrs: []string{sentinel}, SentinelMaster: "mymaster", Password: "wrong"}); !errors.Is(err, transport.ErrAuth) {
		t.Errorf("wrong master password: %v, want ErrAuth", err)
	}
	if err := openErr(t, transport.RedisOptions{Addrs: []string{sentinel}, SentinelMaster: "nosuch", Password: "mpw"}); !strings.Contains(err.Error(), "sentinel "+sentinel+" master nosuch") {
		t.Errorf("unknown master: %v", err)
	}
}
