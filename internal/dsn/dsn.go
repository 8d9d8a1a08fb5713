// Package dsn parses the addresses of the servers signald connects to
// (--redis, --clickhouse) and builds their TLS settings, with errors that
// name the flag and the expected form and never repeat a password.
package dsn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis is a parsed --redis value.
type Redis struct {
	Addrs          []string // host:port; of the sentinels for SentinelMaster
	Username       string
	Password       string
	DB             int
	TLS            bool   // rediss://
	Scheme         string // "", redis, rediss or redis-sentinel
	SentinelMaster string
}

// RedisForms is the expected form of --redis, for error messages.
const RedisForms = "host:port, redis://[user:pass@]host:port[/db], rediss://..., redis://h1:p1,h2:p2 or redis-sentinel://[user:pass@]h1:p1,h2:p2/master"

// ParseRedis parses v, the value of the flag named flagName: host:port, a
// comma-separated seed list, or a redis://, rediss:// or redis-sentinel://
// URL.
func ParseRedis(flagName, v string) (Redis, error) {
	bad := func(why string) (Redis, error) {
		return Redis{}, fmt.Errorf("--%s %q: want %s (%s)", flagName, Redact(v), RedisForms, why)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return bad("empty")
	}
	if parts := splitURLs(v); len(parts) > 1 {
		// --redis repeated with URLs: the seeds of one cluster.
		var r Redis
		for i, p := range parts {
			pr, err := ParseRedis(flagName, p)
			if err != nil {
				return Redis{}, err
			}
			if pr.SentinelMaster != "" {
				return bad("give the Sentinels in one redis-sentinel:// URL")
			}
			if i > 0 && (pr.Scheme != r.Scheme || pr.Username != r.Username || pr.Password != r.Password || pr.DB != r.DB) {
				return bad("the seeds of a cluster share one scheme, user, password and database")
			}
			addrs := append(r.Addrs, pr.Addrs...)
			r, r.Addrs = pr, addrs
		}
		return r, nil
	}
	scheme, _, hasScheme := strings.Cut(v, "://")
	if !hasScheme {
		addrs, err := splitAddrs(v)
		if err != nil {
			return bad(err.Error())
		}
		return Redis{Addrs: addrs}, nil
	}
	switch scheme {
	case "redis", "rediss", "redis-sentinel":
	default:
		return bad(fmt.Sprintf("unknown scheme %q", scheme))
	}
	u, err := parseURL(v)
	if err != nil {
		return bad(err.Error())
	}
	addrs, err := splitAddrs(u.Host)
	if err != nil {
		return bad(err.Error())
	}
	r := Redis{Addrs: addrs, Scheme: scheme, TLS: scheme == "rediss"}
	if u.User != nil {
		r.Username = u.User.Username()
		r.Password, _ = u.User.Password()
	}
	if scheme == "redis-sentinel" {
		master := strings.Trim(u.Path, "/")
		if master == "" || strings.Contains(master, "/") {
			return bad("the path names the master, e.g. redis-sentinel://h1:26379,h2:26379/mymaster")
		}
		r.SentinelMaster = master
		for k, vals := range u.Query() {
			if k != "db" {
				return bad(fmt.Sprintf("unknown parameter %q (redis-sentinel:// takes db=N)", k))
			}
			if r.DB, err = parseDB(vals[len(vals)-1]); err != nil {
				return bad(err.Error())
			}
		}
		return r, nil
	}
	if len(addrs) > 1 {
		// A seed list: go-redis takes further seeds as addr= parameters.
		q := u.Query()
		for _, a := range addrs[1:] {
			q.Add("addr", a)
		}
		cu := *u
		cu.Host, cu.RawQuery = addrs[0], q.Encode()
		if strings.Trim(u.Path, "/") != "" {
			return bad("a cluster has only database 0: leave out the /db path")
		}
		co, err := redis.ParseClusterURL(cu.String())
		if err != nil {
			return bad(stripURL(err))
		}
		r.Addrs, r.Username, r.Password = co.Addrs, co.Username, co.Password
		return r, nil
	}
	o, err := redis.ParseURL(v)
	if err != nil {
		return bad(stripURL(err))
	}
	r.Username, r.Password, r.DB, r.TLS = o.Username, o.Password, o.DB, o.TLSConfig != nil
	return r, nil
}

// ClickHouse is a parsed --clickhouse value.
type ClickHouse struct {
	Addr     string
	User     string
	Password string
	Database string // empty: not in the DSN
	Secure   bool   // ?secure=true
	DSN      bool   // given as a clickhouse:// DSN
	// SecureSet reports that the DSN says secure=..., either way.
	SecureSet bool
}

// ClickHouseForms is the expected form of --clickhouse, for error messages.
const ClickHouseForms = "host:port or clickhouse://[user:pass@]host:port[/db][?secure=true]"

// ParseClickHouse parses v, the value of the flag named flagName: host:port
// or a clickhouse:// DSN.
func ParseClickHouse(flagName, v string) (ClickHouse, error) {
	bad := func(why string) (ClickHouse, error) {
		return ClickHouse{}, fmt.Errorf("--%s %q: want %s (%s)", flagName, Redact(v), ClickHouseForms, why)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return bad("empty")
	}
	scheme, _, hasScheme := strings.Cut(v, "://")
	if !hasScheme {
		if err := checkHostPort(v); err != nil {
			return bad(err.Error())
		}
		return ClickHouse{Addr: v}, nil
	}
	if scheme != "clickhouse" {
		return bad(fmt.Sprintf("unknown scheme %q", scheme))
	}
	u, err := parseURL(v)
	if err != nil {
		return bad(err.Error())
	}
	if err := checkHostPort(u.Host); err != nil {
		return bad(err.Error())
	}
	c := ClickHouse{Addr: u.Host, DSN: true}
	if u.User != nil {
		c.User = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if strings.Contains(db, "/") {
			return bad("the path is one database name")
		}
		c.Database = db
	}
	for k, vals := range u.Query() {
		if k != "secure" {
			return bad(fmt.Sprintf("unknown parameter %q (clickhouse:// takes secure=true)", k))
		}
		b, err := strconv.ParseBool(vals[len(vals)-1])
		if err != nil {
			return bad("secure= takes true or false")
		}
		c.Secure, c.SecureSet = b, true
	}
	return c, nil
}

// Redact returns s with the password of a URL in it replaced by xxxxx, for
// logs and errors. A value that is no URL comes back unchanged.
func Redact(s string) string {
	if parts := splitURLs(s); len(parts) > 1 {
		for i, p := range parts {
			parts[i] = Redact(p)
		}
		return strings.Join(parts, ",")
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	}
	// The authority ends at the first /, ? or #; its userinfo at the last @.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return s
	}
	if scheme != "" {
		scheme += "://"
	}
	return scheme + user + ":xxxxx" + rest[at:]
}

// TLS holds the TLS flags of one server: --<name>-tls-ca and so on.
type TLS struct {
	CA, Cert, Key string
	Insecure      bool // skip verification (tests only)
}

// Set reports whether any TLS flag was given.
func (t TLS) Set() bool { return t.CA != "" || t.Cert != "" || t.Key != "" || t.Insecure }

// Config builds the client's TLS configuration; prefix names the flags in
// errors ("redis" for --redis-tls-ca). The server name is left to the dialer,
// which takes it from the address.
func (t TLS) Config(prefix string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.Insecure}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("--%s-tls-ca: %w", prefix, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--%s-tls-ca %s: no PEM certificate in it; give the CA that signed the server's certificate", prefix, t.CA)
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, fmt.Errorf("--%s-tls-cert and --%s-tls-key: give both (the client certificate and its key) or neither", prefix, prefix)
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("--%s-tls-cert/--%s-tls-key: %w", prefix, prefix, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Password picks the password of a server from the URL, the file flag or the
// environment variable, in that order; giving it both in the URL and in a
// file is an error, since one of them would be silently ignored.
func Password(fromURL, file, fileFlag, env string) (string, error) {
	if file != "" {
		if fromURL != "" {
			return "", fmt.Errorf("--%s: the URL has a password already; give it in one place", fileFlag)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--%s: %w", fileFlag, err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", fmt.Errorf("--%s %s: the file is empty", fileFlag, file)
		}
		return p, nil
	}
	if fromURL != "" {
		return fromURL, nil
	}
	return env, nil
}

// IsTLSVerify reports whether err is a failure to verify the server's
// certificate: a wrong or missing CA, or a name the certificate does not
// cover. Retrying does not help.
func IsTLSVerify(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// parseURL parses v without letting the url package's error, which quotes
// the whole URL with its password, through.
func parseURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if u.Host == "" {
		return nil, errors.New("no host:port")
	}
	if u.Fragment != "" || u.Opaque != "" {
		return nil, errors.New("not a URL")
	}
	return u, nil
}

// stripURL keeps a go-redis parse error from quoting the URL.
func stripURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return strings.TrimPrefix(err.Error(), "redis: ")
}

// splitURLs splits a comma-joined list of URLs (--redis repeated) at each
// comma that starts another URL; a seed list inside one URL stays whole.
func splitURLs(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != ',' {
			continue
		}
		next := s[i+1:]
		if j := strings.Index(next, "://"); j > 0 && !strings.ContainsAny(next[:j], ",:/@") {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func splitAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if err := checkHostPort(a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", a)
	}
	return nil
}

func parseDB(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("db %q: want a database number, 0 or more", s)
	}
	return n, nil
}
