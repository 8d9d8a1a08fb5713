package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// flagEnv names the SIGNALD_* variable behind each flag of `signald run`
// that has one (envOr in config.go). TestConfigEnvTable checks it against
// the usage texts and against the defaults the variables produce.
var flagEnv = map[string]string{
	"redis":         "SIGNALD_REDIS_ADDR",
	"redis-cluster": "SIGNALD_REDIS_CLUSTER",
	"clickhouse":    "SIGNALD_CLICKHOUSE_ADDR",
	"clickhouse-db": "SIGNALD_CLICKHOUSE_DB",
	"json-path":     "SIGNALD_JSON_PATH",
	"data":          "SIGNALD_DATA_DIR",
	"http":          "SIGNALD_HTTP_ADDR",
	"replay":        "SIGNALD_REPLAY",
	"consumer":      "SIGNALD_CONSUMER",
	"log-level":     "SIGNALD_LOG_LEVEL",
	"regime-model":  "SIGNALD_REGIME_MODEL",
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// configFlag is the flag that names the file itself; a file cannot set it.
const configFlag = "config"

// applyConfigFile applies the config file at path (none when empty) to the
// flags of fs not given on the command line. Call it right after fs.Parse.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	return loadConfigFile(path, fs, visited(fs))
}

func visited(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// loadConfigFile sets every flag of fs named in the YAML file at path,
// except those in set (given on the command line) and those whose SIGNALD_*
// variable is set: flags > environment > file > defaults. Values go through
// fs.Set, the flag's own parsing, so every flag is covered without a table.
func loadConfigFile(path string, fs *flag.FlagSet, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml's "yaml: line 2: msg" becomes "path:2: msg".
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("%s:%s: %s (not valid YAML)", path, m[1], m[2])
		}
		return fmt.Errorf("%s: %s (not valid YAML)", path, msg)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: want a mapping of flag names to values, e.g. redis: 127.0.0.1:6379", path, top.Line)
	}
	var errs []error
	fail := func(n *yaml.Node, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", path, n.Line, fmt.Sprintf(format, a...)))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		name := k.Value
		if line, dup := seen[name]; dup {
			fail(k, "%q given twice (first on line %d)", name, line)
			continue
		}
		seen[name] = k.Line
		f := fs.Lookup(name)
		if name == configFlag {
			fail(k, "%q: a config file cannot name another one", name)
			continue
		}
		if f == nil {
			if s := closestFlag(fs, name); s != "" {
				fail(k, "unknown key %q (did you mean %q?)", name, s)
			} else {
				fail(k, "unknown key %q (keys are the flags of signald run -h, without dashes)", name)
			}
			continue
		}
		if set[name] {
			continue // the command line wins
		}
		if ev, ok := flagEnv[name]; ok {
			if _, ok := os.LookupEnv(ev); ok {
				continue // the environment wins
			}
		}
		vals, err := flagValues(fs, f, v)
		if err != nil {
			fail(v, "%s: %v", name, err)
			continue
		}
		if name == "live" {
			if err := liveChannels(fs, v, set); err != nil {
				fail(v, "live: %v", err)
				continue
			}
		}
		for _, s := range vals {
			if err := fs.Set(name, s); err != nil {
				fail(v, "%s: %v", name, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// flagValues turns one YAML value into the strings fs.Set takes for f.
func flagValues(fs *flag.FlagSet, f *flag.Flag, v *yaml.Node) ([]string, error) {
	form := expectedForm(f)
	switch {
	case f.Name == "live":
		return liveValues(v)
	case repeatable(f):
		return repeatValues(v, form)
	case commaList(f):
		if v.Kind == yaml.ScalarNode {
			return []string{v.Value}, nil
		}
		if v.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("want %s", form)
		}
		var parts []string
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("want %s", form)
			}
			parts = append(parts, e.Value)
		}
		return []string{strings.Join(parts, ",")}, nil
	}
	if v.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("want %s", form)
	}
	if err := checkScalar(f, v.Value); err != nil {
		return nil, fmt.Errorf("%q: want %s", v.Value, form)
	}
	return []string{v.Value}, nil
}

// checkScalar parses s as the flag's type, so a wrong type is reported with
// its line and form rather than a flag package message.
func checkScalar(f *flag.Flag, s string) error {
	var err error
	switch flagKind(f) {
	case "bool":
		_, err = strconv.ParseBool(s)
	case "duration":
		_, err = time.ParseDuration(s)
	case "int":
		_, err = strconv.ParseInt(s, 0, 64)
	case "uint":
		_, err = strconv.ParseUint(s, 0, 64)
	case "float":
		_, err = strconv.ParseFloat(s, 64)
	}
	return err
}

// flagKind is the type of a flag as the flag package names it in -h.
func flagKind(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "bool"
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case time.Duration:
			return "duration"
		case int, int64:
			return "int"
		case uint, uint64:
			return "uint"
		case float64:
			return "float"
		case string:
			return "string"
		}
	}
	if k, ok := f.Value.(interface{ kind() string }); ok {
		return k.kind()
	}
	return "string"
}

func expectedForm(f *flag.Flag) string {
	switch {
	case f.Name == "live":
		return "a list of {venue: binance, symbols: [BTCUSDT, ETHUSDT], channels: [trades, book]} or of \"venue:SYM,SYM\" strings"
	case repeatable(f):
		return "a mapping of venue: URL, or a list of \"venue=URL\" strings"
	case commaList(f):
		return "a list, e.g. [a, b], or a comma-separated string"
	}
	switch flagKind(f) {
	case "bool":
		return "true or false"
	case "duration":
		return "a duration, e.g. 25ms, 30s or 15m"
	case "int", "uint":
		return "a whole number, e.g. 4"
	case "float":
		return "a number, e.g. 1 or 0.5"
	}
	return "a string"
}

// repeatable flags take one value per occurrence (--live-endpoint a=b
// --live-endpoint c=d); their usage says so.
func repeatable(f *flag.Flag) bool { return strings.Contains(f.Usage, "(repeatable") }

// commaList flags take one comma-separated string (--replay a,b): their
// usage says so, or their default is such a list.
func commaList(f *flag.Flag) bool {
	return flagKind(f) == "string" && (strings.HasPrefix(f.Usage, "comma-separated") || strings.Contains(f.DefValue, ","))
}

func repeatValues(v *yaml.Node, form string) ([]string, error) {
	var out []string
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, u := v.Content[i], v.Content[i+1]
			if k.Kind != yaml.ScalarNode || u.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("want %s", form)
			}
			out = append(out, k.Value+"="+u.Value)
		}
	case yaml.SequenceNode:
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("want %s", form)
			}
			out = append(out, e.Value)
		}
	case yaml.ScalarNode:
		out = append(out, v.Value)
	default:
		return nil, fmt.Errorf("want %s", form)
	}
	return out, nil
}

// liveEntry is one item of the file's live list.
type liveEntry struct {
	Venue    string   `yaml:"venue"`
	Symbols  []string `yaml:"symbols"`
	Channels []string `yaml:"channels"`
}

func liveValues(v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("want a list of venues, e.g.\n  live:\n    - venue: binance\n      symbols: [BTCUSDT, ETHUSDT]")
	}
	var out []string
	for _, e := range v.Content {
		if e.Kind == yaml.ScalarNode {
			out = append(out, e.Value) // "venue:SYM,SYM"
			continue
		}
		le, err := decodeLive(e)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", e.Line, err)
		}
		out = append(out, le.Venue+":"+strings.Join(le.Symbols, ","))
	}
	return out, nil
}

func decodeLive(e *yaml.Node) (liveEntry, error) {
	var le liveEntry
	if e.Kind != yaml.MappingNode {
		return le, errors.New("want venue, symbols and optionally channels")
	}
	for i := 0; i+1 < len(e.Content); i += 2 {
		switch k := e.Content[i].Value; k {
		case "venue", "symbols", "channels":
		default:
			return le, fmt.Errorf("unknown key %q in a live entry (want venue, symbols, channels)", k)
		}
	}
	if err := e.Decode(&le); err != nil {
		return le, errors.New("want venue: NAME, symbols: [SYM, ...], channels: [trades, ...]")
	}
	if le.Venue == "" || len(le.Symbols) == 0 {
		return le, errors.New("a live entry needs a venue and at least one symbol")
	}
	return le, nil
}

// liveChannels applies the channels of the file's live entries to
// --live-channels: signald run subscribes every venue to the same channels,
// so the entries that list channels must agree.
func liveChannels(fs *flag.FlagSet, v *yaml.Node, set map[string]bool) error {
	var chans string
	var line int
	for _, e := range v.Content {
		if e.Kind != yaml.MappingNode {
			continue
		}
		le, err := decodeLive(e)
		if err != nil || le.Channels == nil {
			continue
		}
		c := strings.Join(le.Channels, ",")
		if line != 0 && c != chans {
			return fmt.Errorf("line %d: channels %s differ from %s on line %d; every venue gets the same channels (or leave them out and set live-channels)", e.Line, c, chans, line)
		}
		chans, line = c, e.Line
	}
	if line == 0 || set["live-channels"] {
		return nil
	}
	return fs.Set("live-channels", chans)
}

// closestFlag suggests a flag for a misspelt key.
func closestFlag(fs *flag.FlagSet, key string) string {
	best, bestD := "", 4
	fs.VisitAll(func(f *flag.Flag) {
		if d := editDistance(key, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	if best == "" {
		// redis-adress: the flag it starts with (redis).
		if head, _, ok := strings.Cut(key, "-"); ok && fs.Lookup(head) != nil {
			return head
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// runFlagSet rebuilds the flags of `signald run` from its -h output, with
// their types and (environment-derived) defaults, so the config commands
// work on the flag set parseRunFlags builds without reaching into it.
func runFlagSet() (*flag.FlagSet, error) {
	var usage bytes.Buffer
	if _, err := parseRunFlags([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) {
		return nil, fmt.Errorf("read the flags of signald run: %v", err)
	}
	fs := flag.NewFlagSet("signald run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, m := range usageFlag.FindAllStringSubmatch(usage.String(), -1) {
		name, typ, text := m[1], m[2], strings.Join(strings.Fields(m[3]), " ")
		def := ""
		if i := strings.LastIndex(text, " (default "); i >= 0 && strings.HasSuffix(text, ")") {
			def = strings.TrimSuffix(text[i+len(" (default "):], ")")
			if q, err := strconv.Unquote(def); err == nil {
				def = q
			}
			text = text[:i]
		}
		kind := map[string]string{"": "bool", "duration": "duration", "int": "int", "uint": "uint", "float": "float"}[typ]
		if kind == "" {
			kind = "string"
		}
		v := &mirrorValue{k: kind}
		if strings.Contains(text, "(repeatable") {
			v.multi = true
		} else if def != "" {
			v.s = def
		}
		fs.Var(v, name, text)
	}
	return fs, nil
}

// usageFlag matches one flag of flag.PrintDefaults: "  -name type" and the
// indented usage lines below it.
var usageFlag = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_-]*)(?: ([^\s]+))?\n?((?:\s*\t.*\n?)*)`)

// mirrorValue holds one flag of runFlagSet: checked as its type, kept as
// the text parseRunFlags will parse.
type mirrorValue struct {
	k     string
	s     string
	list  []string
	multi bool
}

func (v *mirrorValue) kind() string     { return v.k }
func (v *mirrorValue) IsBoolFlag() bool { return v.k == "bool" }
func (v *mirrorValue) String() string {
	if v == nil {
		return ""
	}
	if v.multi {
		return strings.Join(v.list, " ")
	}
	if v.s == "" {
		// -h leaves zero defaults out; show them as the flag would.
		return map[string]string{"bool": "false", "int": "0", "uint": "0", "float": "0", "duration": "0s"}[v.k]
	}
	return v.s
}
func (v *mirrorValue) Set(s string) error {
	if err := checkScalar(&flag.Flag{Value: v}, s); err != nil {
		return fmt.Errorf("want %s", expectedForm(&flag.Flag{Value: v}))
	}
	if v.multi {
		v.list = append(v.list, s)
	} else {
		v.s = s
	}
	return nil
}

// args returns the value as command-line arguments for flag name.
func (v *mirrorValue) args(name string) []string {
	vals := []string{v.s}
	if v.multi {
		vals = v.list
	}
	out := make([]string, 0, len(vals))
	for _, s := range vals {
		out = append(out, "--"+name+"="+s)
	}
	return out
}

// parseRunFlagsWith is parseRunFlags with the config file at file applied
// under the command-line flags in args. Once parseRunFlags itself takes
// --config it is parseRunFlags(append([]string{"--config", file}, args...)).
func parseRunFlagsWith(args []string, file string, stderr io.Writer) (*runConfig, error) {
	fs, fromFile, _, err := loadRunFlags(args, file)
	if err != nil {
		return nil, err
	}
	var fileArgs []string
	for _, name := range fromFile {
		fileArgs = append(fileArgs, fs.Lookup(name).Value.(*mirrorValue).args(name)...)
	}
	return parseRunFlags(append(fileArgs, args...), stderr)
}

// loadRunFlags parses args over the flags of signald run and applies file;
// it returns the flag set and which flags the file and the command line set.
func loadRunFlags(args []string, file string) (fs *flag.FlagSet, fromFile []string, set map[string]bool, err error) {
	fs, err = runFlagSet()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := fs.Parse(args); err != nil {
		// Let parseRunFlags word the error as `signald run` does.
		_, perr := parseRunFlags(args, io.Discard)
		if perr == nil {
			perr = err
		}
		return nil, nil, nil, perr
	}
	if fs.NArg() > 0 {
		return nil, nil, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set = visited(fs)
	if file != "" {
		if err := loadConfigFile(file, fs, set); err != nil {
			return nil, nil, nil, err
		}
	}
	for name := range visited(fs) {
		if !set[name] {
			fromFile = append(fromFile, name)
		}
	}
	sort.Strings(fromFile)
	return fs, fromFile, set, nil
}

const configUsage = `usage:
  signald config check FILE [flags]    check FILE as signald run --config FILE would
  signald config show [--config FILE] [flags]
                                       print the effective settings as YAML,
                                       each with where it came from
`

// cmdConfig is `signald config`.
func cmdConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return errors.New("want check or show")
	}
	switch args[0] {
	case "check":
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			fmt.Fprint(stderr, configUsage)
			return errors.New("check: want the config FILE")
		}
		file, rest := args[1], args[2:]
		if _, err := parseRunFlagsWith(rest, file, io.Discard); err != nil {
			return err
		}
		_, fromFile, _, err := loadRunFlags(rest, file)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ok: %d settings\n", len(fromFile))
		return nil
	case "show":
		file, rest := cutConfigFlag(args[1:])
		fs, fromFile, set, err := loadRunFlags(rest, file)
		if err != nil {
			return err
		}
		return writeEffective(stdout, fs, fromFile, set)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, configUsage)
		return nil
	}
	fmt.Fprint(stderr, configUsage)
	return fmt.Errorf("unknown subcommand %q (want check or show)", args[0])
}

// cutConfigFlag takes --config FILE (or --config=FILE) out of args.
func cutConfigFlag(args []string) (file string, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 < len(args) {
				file = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			file = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	return file, rest
}

func writeEffective(w io.Writer, fs *flag.FlagSet, fromFile []string, set map[string]bool) error {
	file := map[string]bool{}
	for _, n := range fromFile {
		file[n] = true
	}
	var b strings.Builder
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == configFlag {
			return
		}
		src := "default"
		switch ev, hasEnv := flagEnv[f.Name]; {
		case set[f.Name]:
			src = "flag"
		case hasEnv && envSet(ev):
			src = "env " + ev
		case file[f.Name]:
			src = "file"
		}
		v := f.Value.(*mirrorValue)
		switch {
		case f.Name == "live":
			if len(v.list) == 0 {
				fmt.Fprintf(&b, "%s: []  # %s\n", f.Name, src)
				return
			}
			fmt.Fprintf(&b, "%s:  # %s\n", f.Name, src)
			for _, s := range v.list {
				venue, syms, _ := strings.Cut(s, ":")
				fmt.Fprintf(&b, "  - venue: %s\n    symbols: [%s]\n", yamlScalar(venue), yamlList(splitList(syms)))
			}
		case v.multi:
			fmt.Fprintf(&b, "%s: [%s]  # %s\n", f.Name, yamlList(maskAll(f.Name, v.list)), src)
		case commaList(f):
			fmt.Fprintf(&b, "%s: [%s]  # %s\n", f.Name, yamlList(maskAll(f.Name, splitList(v.s))), src)
		case v.k != "string":
			fmt.Fprintf(&b, "%s: %s  # %s\n", f.Name, v.String(), src)
		default:
			fmt.Fprintf(&b, "%s: %s  # %s\n", f.Name, yamlScalar(mask(f.Name, v.String())), src)
		}
	})
	_, err = io.WriteString(w, b.String())
	return err
}

func envSet(name string) bool { _, ok := os.LookupEnv(name); return ok }

func yamlList(vs []string) string {
	q := make([]string, len(vs))
	for i, s := range vs {
		q[i] = yamlScalar(s)
	}
	return strings.Join(q, ", ")
}

// yamlScalar writes s so that YAML reads it back as the same string.
func yamlScalar(s string) string {
	out, err := yaml.Marshal(s)
	if err != nil {
		return strconv.Quote(s)
	}
	return strings.TrimSuffix(string(out), "\n")
}

const masked = "xxxxx"

// secretWord matches flag names that hold secrets. "key" counts only as a
// whole word (api-key, key-file), not inside unrelated names (monkey, keys).
var secretWord = regexp.MustCompile(`(^|-)(password|passwd|secret|token|key)(-|$)|password|secret|token`)

// urlPassword is the password of a URL's user info (redis://user:pw@host).
var urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@`)

func isSecretFlag(name string) bool { return secretWord.MatchString(strings.ToLower(name)) }

// mask hides secrets in the value of flag name for `config show`.
func mask(name, v string) string {
	if v != "" && isSecretFlag(name) {
		return masked
	}
	return urlPassword.ReplaceAllString(v, "${1}"+masked+"@")
}

func maskAll(name string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = mask(name, v)
	}
	return out
}
