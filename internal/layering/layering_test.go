package layering

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/xgpu/xgpu"

// cgoAllowed lists the packages that may import "C": the driver binding and
// the exported shims.
var cgoAllowed = []string{
	module + "/server/cuda",
	module + "/runtime/cudart",
	module + "/runtime/shim",
}

// forbidden lists import prefixes a package prefix must not reach, directly
// or through its dependencies.
var forbidden = []struct {
	name     string
	from     string
	mustNot  string
	whyNotOK string
}{
	{"collective above server", module + "/collective", module + "/server", "collectives run over any backend; the worker plugs them in"},
	{"devicemap is a leaf", module + "/devicemap", module + "/", "every layer builds on devicemap"},
	{"runtime is client-side", module + "/runtime", module + "/server", "the client library must not link server code"},
	{"runtime is client-side (aggregator)", module + "/runtime", module + "/aggregator/", "the client talks to the aggregator over gRPC only"},
	{"shim never links testing", module + "/runtime/cudart", "testing", "the shim ships inside applications"},
}

type pkg struct {
	path    string
	imports []string
	deps    []string
}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}|{{join .Deps " "}}`, module+"/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		if len(parts) != 3 {
			t.Fatalf("go list: unexpected line %q", sc.Text())
		}
		pkgs = append(pkgs, pkg{parts[0], strings.Fields(parts[1]), strings.Fields(parts[2])})
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func hasPrefixAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if s == p || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}

func TestLayering(t *testing.T) {
	pkgs := list(t)
	t.Run("cgo only at the edges", func(t *testing.T) {
		for _, p := range pkgs {
			for _, imp := range p.imports {
				if imp == "C" && !hasPrefixAny(p.path, cgoAllowed) {
					t.Errorf("%s imports \"C\"; only %v may", p.path, cgoAllowed)
				}
			}
		}
	})
	for _, rule := range forbidden {
		t.Run(rule.name, func(t *testing.T) {
			for _, p := range pkgs {
				if !(p.path == rule.from || strings.HasPrefix(p.path, rule.from+"/")) {
					continue
				}
				for _, d := range append(append([]string{}, p.imports...), p.deps...) {
					if d == rule.mustNot || (strings.HasSuffix(rule.mustNot, "/") && strings.HasPrefix(d, rule.mustNot)) ||
						strings.HasPrefix(d, rule.mustNot+"/") {
						t.Errorf("%s depends on %s: %s", p.path, d, rule.whyNotOK)
					}
				}
			}
		})
	}
}
