package deploy_test

import (
	"bufio"
	"debug/elf"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signald-dev/signald/deploy/internal/promcheck"
)

// The kernel's memory-deny-write-execute (what systemd's
// MemoryDenyWriteExecute= uses where the kernel has it): no mapping may be
// writable and executable, or become executable.
const (
	prSetMDWE             = 65
	prGetMDWE             = 66
	prMDWERefuseExecGain  = 1
	envMDWEExec           = "DEPLOY_TEST_MDWE_EXEC" // set: turn MDWE on, then exec os.Args[1:]
	envMDWEReport         = "DEPLOY_TEST_MDWE_REPORT"
	captureForRun         = "testdata/binance/binance_spot_btcusdt_20240808_head1500.gz"
	minStopTimeout        = 60 * time.Second // two drain waits of up to 30 s each
	wantGoBuildFlagsInRun = "-trimpath"
)

// TestMain doubles as the MDWE launcher: the test binary re-runs itself with
// envMDWEExec set to start a command under MDWE.
func TestMain(m *testing.M) {
	if os.Getenv(envMDWEExec) != "" {
		if _, _, errno := syscall.Syscall6(syscall.SYS_PRCTL, prSetMDWE, prMDWERefuseExecGain, 0, 0, 0, 0); errno != 0 {
			fmt.Fprintln(os.Stderr, "mdwe unsupported:", errno)
			os.Exit(3)
		}
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, envMDWEExec+"=") {
				env = append(env, kv)
			}
		}
		err := syscall.Exec(os.Args[1], os.Args[1:], env)
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(4)
	}
	if os.Getenv(envMDWEReport) != "" {
		r, _, errno := syscall.Syscall6(syscall.SYS_PRCTL, prGetMDWE, 0, 0, 0, 0, 0)
		// And it bites: a writable and executable mapping is refused.
		_, wxErr := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		fmt.Printf("mdwe=%d errno=%d wx_refused=%v\n", r, errno, wxErr != nil)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := promcheck.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// shellWords splits a simple shell command line (quotes, no expansions).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		case strings.ContainsRune("&|;<>$`", r):
			t.Fatalf("Dockerfile: the go build line uses %q; keep it one plain command so this test can run it", r)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("Dockerfile: unterminated quote in %q", s)
	}
	if inWord {
		out = append(out, w.String())
	}
	return out
}

var envAssign = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// The image's build stage and runtime stage, checked and its build line run
// here: the binary must be static (distroless/static has no libc) and run.
func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	root := moduleRoot(t)

	var froms []string
	var build *instruction
	stageUser := map[int]string{}
	found := map[string]string{}
	for i := range ins {
		in := &ins[i]
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			if strings.Contains(in.args, "go build") {
				if build != nil {
					t.Fatalf("Dockerfile:%d: a second go build line (the test runs one)", in.line)
				}
				build = in
			}
		case "USER":
			stageUser[len(froms)-1] = in.args
		case "HEALTHCHECK":
			t.Errorf("Dockerfile:%d: HEALTHCHECK needs a shell or client in the image, which distroless has not; probe /healthz from the orchestrator", in.line)
		}
		found[in.cmd] += in.args + "\n"
	}
	if len(froms) < 2 || !strings.Contains(froms[0], "golang:") || !strings.Contains(froms[0], " AS build") {
		t.Errorf("Dockerfile: want a golang build stage then a runtime stage, have FROM %q", froms)
	}
	last := froms[len(froms)-1]
	if !strings.HasPrefix(last, "gcr.io/distroless/static") && last != "scratch" {
		t.Errorf("Dockerfile: runtime stage FROM %s: want distroless/static or scratch", last)
	}
	if u := stageUser[len(froms)-1]; u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("Dockerfile: runtime stage USER %q: want a non-root user", u)
	}
	if !regexp.MustCompile(`(?m)^8080(/tcp)?$`).MatchString(found["EXPOSE"]) {
		t.Errorf("Dockerfile: EXPOSE %q: want 8080", found["EXPOSE"])
	}
	if !strings.Contains(found["VOLUME"], "/var/lib/signald") || !strings.Contains(found["ENV"], "SIGNALD_DATA_DIR=/var/lib/signald") {
		t.Errorf("Dockerfile: want SIGNALD_DATA_DIR=/var/lib/signald and a VOLUME on it")
	}
	if !strings.Contains(found["ENV"], "SIGNALD_HTTP_ADDR=0.0.0.0:8080") {
		t.Errorf("Dockerfile: want SIGNALD_HTTP_ADDR=0.0.0.0:8080 (127.0.0.1 is unreachable from outside the container)")
	}
	// The golang image must carry the Go the module asks for.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goLine == nil || !strings.Contains(found["ARG"], "GO_VERSION="+string(goLine[1])+"\n") {
		t.Errorf("Dockerfile: ARG GO_VERSION must be go.mod's %q", goLine)
	}
	if build == nil {
		t.Fatal("Dockerfile: no RUN ... go build line")
	}

	words := shellWords(t, build.args)
	var env []string
	for len(words) > 0 && envAssign.MatchString(words[0]) {
		env = append(env, words[0])
		words = words[1:]
	}
	if !contains(env, "CGO_ENABLED=0") {
		t.Errorf("Dockerfile:%d: want CGO_ENABLED=0 (a static binary for distroless/static)", build.line)
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile:%d: want [VAR=value...] go build ..., have %q", build.line, build.args)
	}
	if !contains(words, wantGoBuildFlagsInRun) {
		t.Errorf("Dockerfile:%d: want %s (no local paths in the binary)", build.line, wantGoBuildFlagsInRun)
	}
	if !contains(words, "./cmd/signald") {
		t.Errorf("Dockerfile:%d: want ./cmd/signald built", build.line)
	}
	if testing.Short() {
		t.Skip("-short: not building the image's binary")
	}
	bin := filepath.Join(t.TempDir(), "signald")
	args := append([]string(nil), words[2:]...)
	replaced := false
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1], replaced = bin, true
		}
	}
	if !replaced {
		t.Fatalf("Dockerfile:%d: want -o PATH in the go build line", build.line)
	}
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = root // WORKDIR /src holds the repository (COPY . .)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not static, will not start on distroless/static", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "signald ") {
		t.Fatalf("signald version: %v: %q", err, out)
	}

	t.Run("MemoryDenyWriteExecute", func(t *testing.T) { runUnderMDWE(t, bin, root) })
}

// runUnderMDWE runs a short replay of the static binary with
// memory-deny-write-execute on, as the systemd unit does.
func runUnderMDWE(t *testing.T, bin, root string) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// First: does MDWE survive the exec? The launcher execs this binary in
	// report mode.
	probe := exec.Command(self, self)
	probe.Env = append(os.Environ(), envMDWEExec+"=1", envMDWEReport+"=1")
	out, err := probe.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		t.Skipf("this kernel has no PR_SET_MDWE: %s", out)
	}
	if err != nil || !strings.HasPrefix(string(out), "mdwe=1 ") || !strings.Contains(string(out), "wx_refused=true") {
		t.Fatalf("MDWE probe: %v: %q", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	run := exec.Command(self, bin, "run", "--replay", filepath.Join(root, captureForRun), "--speed", "0",
		"--exit-when-done", "--data", t.TempDir(), "--http", addr)
	run.Env = append(os.Environ(), envMDWEExec+"=1")
	done := make(chan struct{})
	var runOut []byte
	go func() { runOut, err = run.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		run.Process.Kill()
		<-done
		t.Fatalf("signald run under MDWE did not finish\n%s", runOut)
	}
	if err != nil || !strings.Contains(string(runOut), "signald stopped cleanly") {
		t.Fatalf("signald run under MDWE: %v\n%s", err, runOut)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// unitFile is a parsed systemd unit: section -> key -> values in order
// (keys like SystemCallFilter may repeat).
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	lines := strings.Split(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("%s:%d: bad section header %q", path, i+1, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" {
				t.Fatalf("%s:%d: want key=value inside a section, have %q", path, i+1, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unitFile) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func TestSystemdUnit(t *testing.T) {
	const path = "systemd/signald.service"
	u := readUnit(t, path)
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Errorf("%s: no [%s] section", path, s)
		}
	}
	want := map[string]string{
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter":        "@system-service",
		"MemoryDenyWriteExecute":  "yes",
		"StateDirectory":          "signald",
		"Restart":                 "on-failure",
	}
	for k, w := range want {
		v, ok := u.last("Service", k)
		if !ok || v != w {
			t.Errorf("%s: [Service] %s=%q, want %q", path, k, v, w)
		}
	}
	if v, _ := u.last("Service", "DynamicUser"); v != "yes" {
		if user, _ := u.last("Service", "User"); user == "" || user == "root" || user == "0" {
			t.Errorf("%s: want DynamicUser=yes or a dedicated User=", path)
		}
	}
	if v, _ := u.last("Service", "ExecStart"); !strings.HasSuffix(strings.Fields(v + " x")[0], "/signald") || !strings.Contains(v, " run") {
		t.Errorf("%s: ExecStart=%q: want .../signald run", path, v)
	}
	if v, _ := u.last("Service", "EnvironmentFile"); v == "" {
		t.Errorf("%s: want an EnvironmentFile= for SIGNALD_* variables", path)
	}
	if env := strings.Join(u["Service"]["Environment"], " "); !strings.Contains(env, "SIGNALD_DATA_DIR=%S/signald") {
		t.Errorf("%s: want Environment=SIGNALD_DATA_DIR=%%S/signald (the StateDirectory)", path)
	}
	if v, _ := u.last("Service", "LimitNOFILE"); v == "" {
		t.Errorf("%s: want LimitNOFILE=", path)
	}
	v, _ := u.last("Service", "TimeoutStopSec")
	d, err := time.ParseDuration(v)
	if err != nil {
		if n, nerr := strconv.Atoi(v); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
	}
	if err != nil || d < minStopTimeout {
		t.Errorf("%s: TimeoutStopSec=%q: want at least %v for the ordered drain", path, v, minStopTimeout)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit checked by this test only")
		return
	}
	// verify insists that ExecStart exists: point it at this test binary.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := u.last("Service", "ExecStart")
	tmp := filepath.Join(t.TempDir(), "signald.service")
	if err := os.WriteFile(tmp, []byte(strings.Replace(string(raw), "ExecStart="+strings.Fields(exe)[0], "ExecStart="+self, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", tmp).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(sa, "security", "--offline=true", tmp).CombinedOutput()
	if err != nil {
		t.Logf("systemd-analyze security --offline: %v (older systemd?)\n%s", err, out)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for signald\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	if lvl, _ := strconv.ParseFloat(string(m[1]), 64); lvl > 2.0 {
		t.Errorf("systemd-analyze security: exposure %s, want at most 2.0 (OK); a hardening option was lost", m[1])
	}
}
