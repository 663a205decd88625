// Package arch keeps the layering of STYLE.md true: api <- internal <-
// extensions <- cmd, no init() or package-level registries under
// internal/, and every extension package registering through api.
package arch

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/weftmesh/weft"

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var ps []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// layer orders the top-level folders; a package may import only packages
// of its own layer or lower ones.
func layer(path string) int {
	rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	switch {
	case rel == "api" || strings.HasPrefix(rel, "api/"):
		return 0
	case rel == "sdk" || strings.HasPrefix(rel, "sdk/"):
		// The applications' client of the sidecar API: it stands alone
		// (standard library only), so everything may use it.
		return 0
	case strings.HasPrefix(rel, "internal/"):
		return 1
	case strings.HasPrefix(rel, "extensions/"):
		return 2
	default: // cmd, bench, test
		return 3
	}
}

func TestImportDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if layer(imp) > layer(p.ImportPath) {
				t.Errorf("%s imports %s: arrows must point api <- internal <- extensions <- cmd", p.ImportPath, imp)
			}
		}
	}
}

func TestNoInitUnderInternal(t *testing.T) {
	fset := token.NewFileSet()
	for _, p := range listPackages(t) {
		if layer(p.ImportPath) != 1 {
			continue
		}
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "init" {
					t.Errorf("%s/%s has init(): nothing under internal/ may", p.ImportPath, f)
				}
			}
		}
	}
}

// TestExtensionsOnlyRegister checks that an extension's init() does one
// thing: call a Register method of an api registry.
func TestExtensionsOnlyRegister(t *testing.T) {
	fset := token.NewFileSet()
	for _, p := range listPackages(t) {
		if layer(p.ImportPath) != 2 {
			continue
		}
		inits := 0
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Recv != nil || fn.Name.Name != "init" {
					continue
				}
				inits++
				if len(fn.Body.List) != 1 {
					t.Errorf("%s: init() must only register its factory", p.ImportPath)
					continue
				}
				es, ok := fn.Body.List[0].(*ast.ExprStmt)
				call, ok2 := es.X.(*ast.CallExpr)
				if !ok || !ok2 {
					t.Errorf("%s: init() must be a single Register call", p.ImportPath)
					continue
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Register" {
					t.Errorf("%s: init() must call an api registry's Register", p.ImportPath)
				}
			}
		}
		if inits != 1 {
			t.Errorf("%s: want exactly one init() registering the extension, got %d", p.ImportPath, inits)
		}
	}
}

// TestEveryExtensionLinked checks that cmd/weft imports every extension
// package, so a new filter cannot be built but left out of the binary.
func TestEveryExtensionLinked(t *testing.T) {
	var imports map[string]bool
	var exts []string
	for _, p := range listPackages(t) {
		if p.ImportPath == module+"/cmd/weft" {
			imports = map[string]bool{}
			for _, i := range p.Imports {
				imports[i] = true
			}
		}
		if layer(p.ImportPath) == 2 {
			exts = append(exts, p.ImportPath)
		}
	}
	for _, e := range exts {
		if !imports[e] {
			t.Errorf("cmd/weft/extensions.go does not import %s", e)
		}
	}
}
