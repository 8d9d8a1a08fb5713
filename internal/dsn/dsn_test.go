package dsn

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseRedis(t *testing.T) {
	cases := []struct {
		in   string
		want Redis
	}{
		{"127.0.0.1:6379", Redis{Addrs: []string{"127.0.0.1:6379"}}},
		{"h1:7000,h2:7001", Redis{Addrs: []string{"h1:7000", "h2:7001"}}},
		{"redis://127.0.0.1:6379", Redis{Addrs: []string{"127.0.0.1:6379"}, Scheme: "redis"}},
		{"redis://default:s3cret@127.0.0.1:46379", Redis{Addrs: []string{"127.0.0.1:46379"}, Username: "default", Password: "s3cret", Scheme: "redis"}},
		{"redis://:pw@h:1/3", Redis{Addrs: []string{"h:1"}, Password: "pw", DB: 3, Scheme: "redis"}},
		{"redis://app:p%40ss@h:1/0", Redis{Addrs: []string{"h:1"}, Username: "app", Password: "p@ss", Scheme: "redis"}},
		{"rediss://app:pw@redis.example.com:6380/2", Redis{Addrs: []string{"redis.example.com:6380"}, Username: "app", Password: "pw", DB: 2, TLS: true, Scheme: "rediss"}},
		{"redis://u:pw@h1:7000,h2:7001,h3:7002", Redis{Addrs: []string{"h1:7000", "h2:7001", "h3:7002"}, Username: "u", Password: "pw", Scheme: "redis"}},
		{"rediss://h1:7000,h2:7001", Redis{Addrs: []string{"h1:7000", "h2:7001"}, TLS: true, Scheme: "rediss"}},
		{"redis://u:pw@h1:7000,redis://u:pw@h2:7001,h3:7002", Redis{Addrs: []string{"h1:7000", "h2:7001", "h3:7002"}, Username: "u", Password: "pw", Scheme: "redis"}},
		{"rediss://h1:7000,rediss://h2:7001", Redis{Addrs: []string{"h1:7000", "h2:7001"}, TLS: true, Scheme: "rediss"}},
		{"redis-sentinel://s1:26379,s2:26379/mymaster", Redis{Addrs: []string{"s1:26379", "s2:26379"}, SentinelMaster: "mymaster", Scheme: "redis-sentinel"}},
		{"redis-sentinel://u:pw@s1:26379/mymaster?db=4", Redis{Addrs: []string{"s1:26379"}, Username: "u", Password: "pw", DB: 4, SentinelMaster: "mymaster", Scheme: "redis-sentinel"}},
	}
	for _, c := range cases {
		got, err := ParseRedis("redis", c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.in, got, c.want)
		}
	}
}

func TestParseRedisMalformed(t *testing.T) {
	cases := []struct{ in, why string }{
		{"", "empty"},
		{"localhost", `"localhost" is not host:port`},
		{"h:0", "port must be 1-65535"},
		{"h:99999", "port must be 1-65535"},
		{"h:1,", `"" is not host:port`},
		{"http://h:1", `unknown scheme "http"`},
		{"redis://", "no host:port"},
		{"redis://u:hunter2@h", `"h" is not host:port`},
		{"redis://u:hunter2@h:1/x", "invalid database number"},
		{"redis://u:hunter2@h:1/1/2", "invalid URL path"},
		{"redis://u:hunter2@h1:1,h2:2/3", "a cluster has only database 0"},
		{"redis://u:hunter2@h:1 2", "invalid"},
		{"redis://u:hunter2@h:1/0?bogus=1", "bogus"},
		{"redis-sentinel://u:hunter2@s:1", "the path names the master"},
		{"redis://u:hunter2@h1:1,redis://u:other@h2:2", "share one scheme, user, password and database"},
		{"redis://u:hunter2@h1:1,rediss://u:hunter2@h2:2", "share one scheme"},
		{"redis://u:hunter2@h1:1,redis-sentinel://u:hunter2@s:1/m", "give the Sentinels in one redis-sentinel:// URL"},
		{"redis://u:hunter2@h1:1,redis://u:hunter2@h2", `"h2" is not host:port`},
		{"redis-sentinel://u:hunter2@s:1/m?db=x", `db "x"`},
		{"redis-sentinel://u:hunter2@s:1/m?foo=1", `unknown parameter "foo"`},
	}
	for _, c := range cases {
		_, err := ParseRedis("redis", c.in)
		if err == nil {
			t.Errorf("%q: parsed, want an error", c.in)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "--redis ") || !strings.Contains(msg, "want host:port, redis://") || !strings.Contains(msg, c.why) {
			t.Errorf("%q: message %q does not name the flag, the forms and %q", c.in, msg, c.why)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("%q: message %q shows the password", c.in, msg)
		}
	}
}

func TestParseClickHouse(t *testing.T) {
	cases := []struct {
		in   string
		want ClickHouse
	}{
		{"127.0.0.1:9000", ClickHouse{Addr: "127.0.0.1:9000"}},
		{"clickhouse://h:9000", ClickHouse{Addr: "h:9000", DSN: true}},
		{"clickhouse://user:pw@host:9440?secure=true", ClickHouse{Addr: "host:9440", User: "user", Password: "pw", Secure: true, SecureSet: true, DSN: true}},
		{"clickhouse://user:pw@host:9000/ticks?secure=false", ClickHouse{Addr: "host:9000", User: "user", Password: "pw", Database: "ticks", SecureSet: true, DSN: true}},
		{"clickhouse://reader@host:9000/", ClickHouse{Addr: "host:9000", User: "reader", DSN: true}},
	}
	for _, c := range cases {
		got, err := ParseClickHouse("clickhouse", c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.in, got, c.want)
		}
	}
}

func TestParseClickHouseMalformed(t *testing.T) {
	cases := []struct{ in, why string }{
		{"", "empty"},
		{"host", `"host" is not host:port`},
		{"h:70000", "port must be 1-65535"},
		{"tcp://h:9000", `unknown scheme "tcp"`},
		{"clickhouse://u:hunter2@host", `"host" is not host:port`},
		{"clickhouse://u:hunter2@h:1?secure=maybe", "secure= takes true or false"},
		{"clickhouse://u:hunter2@h:1?compress=1", `unknown parameter "compress"`},
		{"clickhouse://u:hunter2@h:1/a/b", "one database name"},
		{"clickhouse://u:hunter2@h:1%zz", "invalid"},
	}
	for _, c := range cases {
		_, err := ParseClickHouse("clickhouse", c.in)
		if err == nil {
			t.Errorf("%q: parsed, want an error", c.in)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "--clickhouse ") || !strings.Contains(msg, "want host:port or clickhouse://") || !strings.Contains(msg, c.why) {
			t.Errorf("%q: message %q does not name the flag, the forms and %q", c.in, msg, c.why)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("%q: message %q shows the password", c.in, msg)
		}
	}
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:6379":                          "127.0.0.1:6379",
		"redis://h:1":                             "redis://h:1",
		"redis://user@h:1":                        "redis://user@h:1",
		"redis://user:pw@h:1/2":                   "redis://user:xxxxx@h:1/2",
		"redis://:pw@h:1":                         "redis://:xxxxx@h:1",
		"rediss://u:p@ss@h:1":                     "rediss://u:xxxxx@h:1",
		"clickhouse://u:pw@h:9440?secure=true":    "clickhouse://u:xxxxx@h:9440?secure=true",
		"redis-sentinel://u:pw@s1:1,s2:2/master":  "redis-sentinel://u:xxxxx@s1:1,s2:2/master",
		"redis://u:pw@h1:1,rediss://v:pw2@h2:2/0": "redis://u:xxxxx@h1:1,rediss://v:xxxxx@h2:2/0",
		"u:pw@h:1":                                "u:xxxxx@h:1",
		"redis://h:1/path@with:colon":             "redis://h:1/path@with:colon",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ url, file, env, want, err string }{
		{"", "", "", "", ""},
		{"from-url", "", "from-env", "from-url", ""},
		{"", "", "from-env", "from-env", ""},
		{"", file, "from-env", "from-file", ""},
		{"from-url", file, "", "", "--redis-password-file: the URL has a password already"},
		{"", filepath.Join(dir, "missing"), "", "", "--redis-password-file: open"},
		{"", empty, "", "", "the file is empty"},
	} {
		got, err := Password(c.url, c.file, "redis-password-file", c.env)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: err %v, want %q", c, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: got %q, %v, want %q", c, got, err, c.want)
		}
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tls  TLS
		want string
	}{
		{TLS{CA: filepath.Join(dir, "missing.pem")}, "--redis-tls-ca: open"},
		{TLS{CA: junk}, "--redis-tls-ca " + junk + ": no PEM certificate"},
		{TLS{Cert: junk}, "--redis-tls-cert and --redis-tls-key: give both"},
		{TLS{Key: junk}, "--redis-tls-cert and --redis-tls-key: give both"},
		{TLS{Cert: junk, Key: junk}, "--redis-tls-cert/--redis-tls-key:"},
	} {
		if _, err := c.tls.Config("redis"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.tls, err, c.want)
		}
	}
	cfg, err := TLS{Insecure: true}.Config("redis")
	if err != nil || !cfg.InsecureSkipVerify || cfg.RootCAs != nil {
		t.Fatalf("insecure: %+v, %v", cfg, err)
	}
	if (TLS{}).Set() || !(TLS{Key: "k"}).Set() {
		t.Fatal("Set")
	}
}
