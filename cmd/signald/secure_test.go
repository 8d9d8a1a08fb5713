package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/signald-dev/signald/internal/dsn/dsntest"
	"github.com/signald-dev/signald/pipeline"
	"github.com/signald-dev/signald/store"
)

// secret is the password of the throwaway servers; it must never appear in
// what signald prints or serves.
const secret = "Tr0ub4dor-secret"

// runEnv runs signald with args and extra environment and returns its
// combined output.
func runEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func noSecret(t *testing.T, where, text string) {
	t.Helper()
	if strings.Contains(text, secret) {
		t.Fatalf("%s shows the password:\n%s", where, tail(text, 3000))
	}
}

// TestSecureRedis runs the daemon and dlq against a TLS redis-server with an
// ACL user, through each way of giving the password, and checks that the
// password never shows in stderr or /metrics, also when the start fails.
func TestSecureRedis(t *testing.T) {
	certs := dsntest.NewCerts(t)
	addr := dsntest.StartRedis(t, true, "--tls-cert-file", certs.ServerCert, "--tls-key-file", certs.ServerKey,
		"--tls-ca-cert-file", certs.CA, "--tls-auth-clients", "no",
		"--user", "default", "off", "--user", "app", "on", ">"+secret, "~*", "&*", "+@all")
	dir := t.TempDir()
	pwFile, wrongFile := filepath.Join(dir, "pw"), filepath.Join(dir, "wrong")
	os.WriteFile(pwFile, []byte(secret+"\n"), 0o600)
	os.WriteFile(wrongFile, []byte("not-"+secret+"\n"), 0o600)

	// The daemon through a rediss:// URL with the password in it.
	http := freePort(t)
	d := startDaemon(t, "--redis", "rediss://app:"+secret+"@"+addr+"/2", "--redis-tls-ca", certs.CA,
		"--replay", spotCapture, "--limit", "2000", "--speed", "0", "--data", t.TempDir(), "--http", http)
	d.waitLog(t, "transport: Redis Streams", 30*time.Second)
	m := d.waitMetrics(t, http, "the pipeline's metrics", 30*time.Second, func(m string) bool {
		return strings.Contains(m, "signald_pipeline_")
	})
	noSecret(t, "/metrics", m)
	if !strings.Contains(d.stderr.String(), addr) {
		t.Fatalf("the start-up lines do not name %s:\n%s", addr, tail(d.stderr.String(), 2000))
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.wait(t, 30*time.Second); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	noSecret(t, "stderr", d.stderr.String())

	// dlq with the password from a file, then from the environment.
	if out, err := runEnv(t, nil, "dlq", "list", "--redis", "rediss://app@"+addr, "--redis-password-file", pwFile, "--redis-tls-ca", certs.CA); err != nil {
		t.Fatalf("dlq with --redis-password-file: %v\n%s", err, out)
	}
	if out, err := runEnv(t, []string{"SIGNALD_REDIS_PASSWORD=" + secret}, "dlq", "list", "--redis", "rediss://app@"+addr, "--redis-tls-ca", certs.CA); err != nil {
		t.Fatalf("dlq with SIGNALD_REDIS_PASSWORD: %v\n%s", err, out)
	}

	// Verification off: it connects, and says so.
	out, err := runEnv(t, []string{"SIGNALD_REDIS_PASSWORD=" + secret}, "dlq", "list", "--redis", "rediss://app@"+addr, "--redis-tls-insecure")
	if err != nil || !strings.Contains(out, "--redis-tls-insecure: the server's certificate is not verified") {
		t.Fatalf("dlq with --redis-tls-insecure: %v\n%s", err, out)
	}
	// -h shows an address from the environment without its password.
	out, _ = runEnv(t, []string{"SIGNALD_REDIS_ADDR=rediss://app:" + secret + "@" + addr, "SIGNALD_CLICKHOUSE_ADDR=clickhouse://u:" + secret + "@h:9440"}, "run", "-h")
	noSecret(t, "run -h", out)
	if !strings.Contains(out, "rediss://app:xxxxx@"+addr) {
		t.Fatalf("run -h does not show the redacted default:\n%s", out)
	}

	other := dsntest.NewCerts(t)
	base := []string{"run", "--http", freePort(t), "--data", t.TempDir()}
	for _, c := range []struct {
		name      string
		env, args []string
		want      string
	}{
		{"wrong password in the URL, with --connect-wait", nil,
			[]string{"--redis", "rediss://app:wrong-" + secret + "@" + addr, "--redis-tls-ca", certs.CA, "--connect-wait", "1m"},
			"Redis refused the credentials: check the user and password in --redis, --redis-password-file"},
		{"wrong password file", nil,
			[]string{"--redis", "rediss://app@" + addr, "--redis-password-file", wrongFile, "--redis-tls-ca", certs.CA},
			"Redis refused the credentials"},
		{"wrong user", []string{"SIGNALD_REDIS_PASSWORD=" + secret},
			[]string{"--redis", "rediss://nobody@" + addr, "--redis-tls-ca", certs.CA},
			"Redis refused the credentials"},
		{"wrong CA", nil,
			[]string{"--redis", "rediss://app:" + secret + "@" + addr, "--redis-tls-ca", other.CA, "--connect-wait", "1m"},
			"certificate did not verify: give the CA that signed it with --redis-tls-ca"},
		{"TLS flags turn TLS on for host:port", []string{"SIGNALD_REDIS_PASSWORD=wrong"},
			[]string{"--redis", addr, "--redis-tls-ca", certs.CA},
			"Redis refused the credentials"},
		{"malformed URL", nil,
			[]string{"--redis", "rediss://app:" + secret + "@127.0.0.1"},
			`--redis "rediss://app:xxxxx@127.0.0.1": want host:port`},
		{"URL and file", nil,
			[]string{"--redis", "rediss://app:" + secret + "@" + addr, "--redis-password-file", pwFile},
			"--redis-password-file: the URL has a password already"},
		{"TLS flags with redis://", nil,
			[]string{"--redis", "redis://app:" + secret + "@" + addr, "--redis-tls-ca", certs.CA},
			"use rediss://"},
	} {
		out, err := runEnv(t, c.env, append(base, c.args...)...)
		if err == nil {
			t.Fatalf("%s: started", c.name)
		}
		noSecret(t, c.name+": stderr", out)
		if !strings.Contains(out, c.want) {
			t.Fatalf("%s: message %q does not say %q", c.name, tail(out, 1500), c.want)
		}
		if strings.Contains(out, "is Redis running") || strings.Contains(out, "waiting for Redis") {
			t.Fatalf("%s: a refusal that waiting cannot cure was retried or blamed on the server being down:\n%s", c.name, tail(out, 1500))
		}
	}
}

// TestSecureClickHouse: refused ClickHouse credentials say so, without the
// password and without the "is ClickHouse running?" hint, and are not
// retried; a malformed DSN is named with its password masked. The refusal
// is built from the server's exception (the shared test engine, chDB,
// aborts on a refused login, so no test refuses one there).
func TestSecureClickHouse(t *testing.T) {
	// What store.OpenClickHouse returns for the server's exception 516.
	refused := fmt.Errorf("clickhouse 127.0.0.1:9440: %w: %w", store.ErrAuth, &ch.Exception{Code: proto.ErrAuthenticationFailed, Name: "DB::Exception", Message: "Authentication failed"})
	err := explainOpenError(&pipeline.OpenError{Kind: "ClickHouse", Err: refused})
	if !strings.Contains(err.Error(), "ClickHouse refused the credentials: check the user and password in --clickhouse") || strings.Contains(err.Error(), "is ClickHouse running") {
		t.Fatalf("refused credentials: %v", err)
	}
	const addr = "127.0.0.1:9440"
	for _, cmd := range []string{"run", "backtest"} {
		out, err := runEnv(t, nil, cmd, "--clickhouse", "clickhouse://u:"+secret+"@"+addr+"?secure=maybe")
		if err == nil || !strings.Contains(out, `--clickhouse "clickhouse://u:xxxxx@`) {
			t.Fatalf("%s, malformed DSN: %v %s", cmd, err, out)
		}
		noSecret(t, cmd+", malformed DSN", out)
	}
}

// TestConnectionFlags: the forms of --redis and --clickhouse resolve into
// the options the pipeline gets.
func TestConnectionFlags(t *testing.T) {
	t.Setenv("SIGNALD_REDIS_ADDR", "env-host:1")
	t.Setenv("SIGNALD_REDIS_PASSWORD", "")
	t.Setenv("SIGNALD_CLICKHOUSE_PASSWORD", "from-env")
	parse := func(args ...string) *runConfig {
		t.Helper()
		c, err := parseRunFlags(append([]string{"--data", t.TempDir()}, args...), io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return c
	}
	// Repeated --redis: the seeds of a cluster, replacing the default.
	c := parse("--redis", "redis://u:pw@h1:7000", "--redis", "redis://u:pw@h2:7001")
	if o := c.redisOpts; !o.ClusterMode || !slices.Equal(o.Addrs, []string{"h1:7000", "h2:7001"}) || o.Username != "u" || o.Password != "pw" {
		t.Fatalf("repeated --redis: %+v", o)
	}
	c = parse("--redis", "redis-sentinel://:mpw@s1:26379,s2:26379/mymaster?db=2")
	if o := c.redisOpts; o.ClusterMode || o.SentinelMaster != "mymaster" || o.DB != 2 || o.Password != "mpw" || len(o.Addrs) != 2 {
		t.Fatalf("sentinel: %+v", o)
	}
	c = parse("--redis", "rediss://h:6380/1")
	if o := c.redisOpts; o.TLS == nil || o.DB != 1 || o.ClusterMode {
		t.Fatalf("rediss: %+v", o)
	}
	// The DSN's database overrides --clickhouse-db; the password comes
	// from the environment when the DSN has none.
	c = parse("--clickhouse", "clickhouse://reader@ch.example.com:9440/ticks?secure=true", "--clickhouse-db", "other")
	if o := c.chOpts; o.Addr != "ch.example.com:9440" || o.User != "reader" || o.Password != "from-env" || o.Database != "ticks" || o.TLS == nil {
		t.Fatalf("clickhouse DSN: %+v", o)
	}
	c = parse("--clickhouse", "127.0.0.1:9000", "--clickhouse-db", "other")
	if o := c.chOpts; o.Database != "other" || o.TLS != nil {
		t.Fatalf("clickhouse host:port: %+v", o)
	}
	for _, bad := range [][]string{
		{"--redis", "redis-sentinel://s:1/m", "--redis-cluster"},
		{"--redis", "redis://h1:1,h2:2/3"},
		{"--clickhouse", "clickhouse://h:1?secure=false", "--clickhouse-tls-insecure"},
		{"--redis", "h:1", "--redis-tls-cert", "x"},
	} {
		if _, err := parseRunFlags(append([]string{"--data", t.TempDir()}, bad...), io.Discard); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
