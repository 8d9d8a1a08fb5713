package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "signald.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clearConfigEnv unsets every SIGNALD_* variable of the flags for the test.
func clearConfigEnv(t *testing.T) {
	for _, ev := range flagEnv {
		if v, ok := os.LookupEnv(ev); ok {
			t.Setenv(ev, v) // restored after the test
			os.Unsetenv(ev)
		}
	}
}

func runFlags(t *testing.T) *flag.FlagSet {
	t.Helper()
	fs, err := runFlagSet()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// nonDefault is a valid value of f that differs from its default.
func nonDefault(f *flag.Flag) string {
	switch flagKind(f) {
	case "bool":
		if f.Value.String() == "true" {
			return "false"
		}
		return "true"
	case "duration":
		d, _ := time.ParseDuration(f.Value.String())
		return (d + 1500*time.Millisecond).String()
	case "int", "uint":
		var n int
		fmt.Sscan(f.Value.String(), &n)
		return fmt.Sprint(n + 3)
	case "float":
		return "2.5"
	}
	return "x-" + f.Value.String()
}

func TestConfigFileRoundTrip(t *testing.T) {
	clearConfigEnv(t)
	fs := runFlags(t)
	var body strings.Builder
	want := map[string]string{}
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == configFlag {
			return // names the file; a file cannot set it
		}
		n++
		switch {
		case f.Name == "live":
			body.WriteString("live:\n  - venue: binance\n    symbols: [BTCUSDT, ETHUSDT]\n  - kraken:XBT/USD\n")
			want[f.Name] = "binance:BTCUSDT,ETHUSDT kraken:XBT/USD"
		case repeatable(f):
			fmt.Fprintf(&body, "%s:\n  binance: wss://a.example/ws\n  kraken: wss://b.example/ws\n", f.Name)
			want[f.Name] = "binance=wss://a.example/ws kraken=wss://b.example/ws"
		case commaList(f):
			fmt.Fprintf(&body, "%s: [one, two]\n", f.Name)
			want[f.Name] = "one,two"
		default:
			v := nonDefault(f)
			if v == f.Value.String() {
				t.Fatalf("no non-default value for %s", f.Name)
			}
			fmt.Fprintf(&body, "%s: %s\n", f.Name, yamlScalar(v))
			want[f.Name] = v
		}
	})
	if n < 20 {
		t.Fatalf("only %d flags of signald run found", n)
	}
	if err := loadConfigFile(writeConfig(t, body.String()), fs, map[string]bool{}); err != nil {
		t.Fatalf("load:\n%s\n%v", body.String(), err)
	}
	for name, w := range want {
		if got := fs.Lookup(name).Value.String(); got != w {
			t.Errorf("%s: got %q, want %q", name, got, w)
		}
	}
}

// The file's values reach runConfig through parseRunFlags itself.
func TestConfigFileRunConfig(t *testing.T) {
	clearConfigEnv(t)
	p := writeConfig(t, `
redis: 127.0.0.1:6379
store-batch-wait: 50ms
shards: 8
exit-when-done: true
macro-returns: mid_ret, mid_ret_sum_60
live:
  - venue: binance
    symbols: [BTCUSDT, ETHUSDT]
    channels: [trades, book]
  - venue: kraken
    symbols: [XBT/USD]
`)
	c, err := parseRunFlagsWith(nil, p, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis != "127.0.0.1:6379" || c.StoreLinger != 50*time.Millisecond || c.Shards != 8 || !c.ExitAfterDrain {
		t.Errorf("scalars: %+v", c)
	}
	if strings.Join(c.MacroReturns, ",") != "mid_ret,mid_ret_sum_60" {
		t.Errorf("macro-returns: %v", c.MacroReturns)
	}
	if len(c.Live.Specs) != 2 || c.Live.Specs[0].Venue != "binance" || strings.Join(c.Live.Specs[0].Symbols, ",") != "BTCUSDT,ETHUSDT" || c.Live.Specs[1].Symbols[0] != "XBT/USD" {
		t.Errorf("live: %+v", c.Live.Specs)
	}
	if strings.Join(c.Live.Channels, ",") != "trades,book" {
		t.Errorf("live channels: %v", c.Live.Channels)
	}
}

func TestConfigFilePrecedence(t *testing.T) {
	clearConfigEnv(t)
	p := writeConfig(t, "redis: 10.0.0.1:6379\nclickhouse: 10.0.0.2:9000\nhttp: 10.0.0.3:8080\n")
	t.Setenv("SIGNALD_CLICKHOUSE_ADDR", "10.0.0.9:9000")
	t.Setenv("SIGNALD_HTTP_ADDR", "10.0.0.9:8080")
	c, err := parseRunFlagsWith([]string{"--http", "10.0.0.7:8080"}, p, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis != "10.0.0.1:6379" { // file over default
		t.Errorf("redis %q, want the file's", c.Redis)
	}
	if c.ClickHouse != "10.0.0.9:9000" { // env over file
		t.Errorf("clickhouse %q, want the environment's", c.ClickHouse)
	}
	if c.HTTPAddr != "10.0.0.7:8080" { // flag over env and file
		t.Errorf("http %q, want the flag's", c.HTTPAddr)
	}
	if c.DataDir != "./data" { // default
		t.Errorf("data %q, want the default", c.DataDir)
	}
	var out bytes.Buffer
	if err := cmdConfig([]string{"show", "--config", p, "--http", "10.0.0.7:8080"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"redis: 10.0.0.1:6379  # file\n",
		"clickhouse: 10.0.0.9:9000  # env SIGNALD_CLICKHOUSE_ADDR\n",
		"http: 10.0.0.7:8080  # flag\n",
		"data: ./data  # default\n",
		"shards: 4  # default\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConfigFileErrors(t *testing.T) {
	clearConfigEnv(t)
	for _, tc := range []struct{ body, want string }{
		{"redis: 127.0.0.1:6379\nredis-adress: x\n", `signald.yaml:2: unknown key "redis-adress" (did you mean "redis"?)`},
		{"\n\nzzzzzzzzzz: 1\n", `signald.yaml:3: unknown key "zzzzzzzzzz" (keys are the flags`},
		{"store-batch-wait: fast\n", `signald.yaml:1: store-batch-wait: "fast": want a duration, e.g. 25ms`},
		{"shards: [1, 2]\n", "signald.yaml:1: shards: want a whole number"},
		{"loop: maybe\n", `signald.yaml:1: loop: "maybe": want true or false`},
		{"speed: fast\n", "want a number"},
		{"live: binance:BTCUSDT\n", "signald.yaml:1: live: want a list of venues"},
		{"live:\n  - venue: binance\n    symbol: [BTCUSDT]\n", `line 2: unknown key "symbol" in a live entry`},
		{"live:\n  - venue: binance\n    symbols: [A]\n    channels: [trades]\n  - venue: kraken\n    symbols: [B]\n    channels: [book]\n", "line 5: channels book differ from trades on line 2"},
		{"redis: a\nredis: b\n", `signald.yaml:2: "redis" given twice (first on line 1)`},
		{"- redis\n", "signald.yaml:1: want a mapping of flag names"},
		{"config: other.yaml\n", "cannot name another"},
		{"redis: \"open\n", "signald.yaml:2: found unexpected end of stream (not valid YAML)"},
	} {
		p := writeConfig(t, tc.body)
		err := loadConfigFile(p, runFlags(t), map[string]bool{})
		if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), p, "signald.yaml"), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	if err := loadConfigFile(filepath.Join(t.TempDir(), "none.yaml"), runFlags(t), nil); err == nil || !strings.HasPrefix(err.Error(), "--config: ") {
		t.Errorf("missing file: %v", err)
	}
}

func TestConfigCheck(t *testing.T) {
	clearConfigEnv(t)
	good := writeConfig(t, "redis: 127.0.0.1:6379\nshards: 8\nlive:\n  - venue: binance\n    symbols: [BTCUSDT]\n")
	var out, errb bytes.Buffer
	if code := realMainConfig([]string{"check", good}, &out, &errb); code != 0 || out.String() != "ok: 3 settings\n" {
		t.Errorf("good file: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	for _, body := range []string{
		"shards: 0\n",           // validate: 1-1024
		"redis-cluster: true\n", // validate: needs --redis
		"live:\n  - venue: nowhere\n    symbols: [X]\n", // unknown venue
		"redis-adress: x\n",
	} {
		out.Reset()
		errb.Reset()
		if code := realMainConfig([]string{"check", writeConfig(t, body)}, &out, &errb); code == 0 || errb.Len() == 0 || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want a failure with a message", body, code, out.String(), errb.String())
		}
	}
	errb.Reset()
	if code := realMainConfig([]string{"check", writeConfig(t, "shards: 0\n")}, &out, &errb); !strings.Contains(errb.String(), "--shards 0: must be 1-1024") {
		t.Errorf("exit %d, stderr %q: want the validation message", code, errb.String())
	}
	if code := realMainConfig([]string{"check"}, &out, &errb); code == 0 {
		t.Error("check without a file succeeded")
	}
}

// realMainConfig runs `signald config` as realMain's switch will.
func realMainConfig(args []string, stdout, stderr *bytes.Buffer) int {
	if err := cmdConfig(args, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "signald config: %v\n", err)
		return 1
	}
	return 0
}

func TestConfigShowMasks(t *testing.T) {
	clearConfigEnv(t)
	p := writeConfig(t, "live:\n  - venue: binance\n    symbols: [BTCUSDT]\nlive-endpoint:\n  binance: wss://user:hunter2@proxy.example:443/ws\n")
	t.Setenv("SIGNALD_REDIS_ADDR", "redis://app:s3cr3tpw@10.0.0.1:6379/0")
	var out bytes.Buffer
	if err := cmdConfig([]string{"show", "--config", p, "--regime-model", "https://u:topsecret@models.example/m.json"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"hunter2", "s3cr3tpw", "topsecret"} {
		if strings.Contains(out.String(), pw) {
			t.Errorf("show prints the password %q:\n%s", pw, out.String())
		}
	}
	for _, want := range []string{"redis://app:xxxxx@10.0.0.1:6379/0", "binance=wss://user:xxxxx@proxy.example:443/ws", "https://u:xxxxx@models.example"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}
	for name, secret := range map[string]bool{
		"redis-password": true, "clickhouse-secret": true, "api-token": true, "api-key": true, "key": true, "tls-key-file": true,
		"redis": false, "monkey": false, "keyspace": false, "stream-prefix": false, "hotkeys": false,
	} {
		if isSecretFlag(name) != secret {
			t.Errorf("isSecretFlag(%q) = %v, want %v", name, !secret, secret)
		}
		if got := mask(name, "v"); (got == masked) != secret {
			t.Errorf("mask(%q) = %q", name, got)
		}
	}
	// No flag of signald run holds a secret by name today; a new one that
	// does must be masked, which the cases above cover.
	runFlags(t).VisitAll(func(f *flag.Flag) {
		if isSecretFlag(f.Name) {
			t.Logf("secret flag %s is masked in config show", f.Name)
		}
	})
}

// TestConfigEnvTable keeps flagEnv true: every variable a usage text names
// is in it, and each variable in it changes its flag's default.
func TestConfigEnvTable(t *testing.T) {
	clearConfigEnv(t)
	envInUsage := regexp.MustCompile(`\(env (SIGNALD_[A-Z0-9_]+)\)`)
	runFlags(t).VisitAll(func(f *flag.Flag) {
		if m := envInUsage.FindStringSubmatch(f.Usage); m != nil && flagEnv[f.Name] != m[1] {
			t.Errorf("--%s names %s in its usage; flagEnv has %q", f.Name, m[1], flagEnv[f.Name])
		}
	})
	for name, ev := range flagEnv {
		fs := runFlags(t)
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("flagEnv names --%s, which signald run does not have", name)
			continue
		}
		probe, want := "probe-value", "probe-value"
		if flagKind(f) == "bool" {
			probe, want = "1", "true"
		}
		t.Setenv(ev, probe)
		if got := runFlags(t).Lookup(name).Value.String(); got != want {
			t.Errorf("%s=%s: --%s defaults to %q, want %q", ev, probe, name, got, want)
		}
		os.Unsetenv(ev)
	}
}

// TestConfigExample keeps deploy/signald.example.yaml complete and valid:
// it names every flag of signald run and loads without an error.
func TestConfigExample(t *testing.T) {
	clearConfigEnv(t)
	const example = "../../deploy/signald.example.yaml"
	body, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var usage bytes.Buffer
	if _, err := parseRunFlags([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseRunFlags -h: %v", err)
	}
	names := regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_-]*)`).FindAllStringSubmatch(usage.String(), -1)
	var missing []string
	for _, m := range names {
		if m[1] == configFlag {
			continue
		}
		// A flag appears as a key, or commented out as "# key:".
		if !regexp.MustCompile(`(?m)^(# ?)?` + regexp.QuoteMeta(m[1]) + `:`).Match(body) {
			missing = append(missing, m[1])
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s does not cover these flags of signald run: %s (add each with its default and a comment)", example, strings.Join(missing, ", "))
	}
	if err := loadConfigFile(example, runFlags(t), map[string]bool{}); err != nil {
		t.Errorf("the example does not load: %v", err)
	}
}

// TestConfigFileStdFlags is the wiring parseRunFlags will have: a --config
// flag and applyConfigFile after fs.Parse, on the flag package's own types.
func TestConfigFileStdFlags(t *testing.T) {
	clearConfigEnv(t)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := fs.String(configFlag, "", "config file")
	wait := fs.Duration("store-batch-wait", 25*time.Millisecond, "")
	shards := fs.Int("shards", 4, "")
	seed := fs.Uint64("synthetic-seed", 1, "")
	speed := fs.Float64("speed", 1, "")
	loop := fs.Bool("loop", false, "")
	redis := fs.String("redis", "", "")
	list := fs.String("macro-returns", "a,b", "comma-separated return columns")
	p := writeConfig(t, "store-batch-wait: 40ms\nshards: 9\nsynthetic-seed: 7\nspeed: 0.5\nloop: true\nredis: 10.0.0.1:6379\nmacro-returns: [x, y]\n")
	if err := fs.Parse([]string{"--config", p, "--shards", "2"}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(fs, *cfg); err != nil {
		t.Fatal(err)
	}
	if *wait != 40*time.Millisecond || *shards != 2 || *seed != 7 || *speed != 0.5 || !*loop || *redis != "10.0.0.1:6379" || *list != "x,y" {
		t.Errorf("got wait %v shards %d seed %d speed %v loop %v redis %q list %q", *wait, *shards, *seed, *speed, *loop, *redis, *list)
	}
	fs.Int("limit", 0, "")
	// A flag set earlier (on the command line or by a file) is skipped.
	bad := writeConfig(t, "\nshards: 3\nlimit: many\n")
	if err := applyConfigFile(fs, bad); err == nil || !strings.Contains(err.Error(), `:3: limit: "many": want a whole number`) {
		t.Errorf("wrong type: %v", err)
	}
	if err := applyConfigFile(fs, ""); err != nil {
		t.Errorf("no file: %v", err)
	}
}

// The output of show loads back as a config file with the same values.
func TestConfigShowLoadsBack(t *testing.T) {
	clearConfigEnv(t)
	in := writeConfig(t, "shards: 8\nlive:\n  - venue: binance\n    symbols: [BTCUSDT, ETHUSDT]\nreplay-venue: \"true\"\nmacro-returns: a,b\n")
	var out bytes.Buffer
	if err := cmdConfig([]string{"show", "--config", in, "--loop"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	fs := runFlags(t)
	if err := loadConfigFile(writeConfig(t, out.String()), fs, map[string]bool{}); err != nil {
		t.Fatalf("show output does not load: %v\n%s", err, out.String())
	}
	want, _, _, err := loadRunFlags([]string{"--loop"}, in)
	if err != nil {
		t.Fatal(err)
	}
	want.VisitAll(func(f *flag.Flag) {
		if got := fs.Lookup(f.Name).Value.String(); got != f.Value.String() {
			t.Errorf("%s: %q after the round trip, want %q", f.Name, got, f.Value.String())
		}
	})
}
