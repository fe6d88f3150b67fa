package lazyre

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestNewCompilesOnceOnFirstCall(t *testing.T) {
	re := New(`^pv-(\d+)$`)
	if m := re().FindStringSubmatch("pv-42"); len(m) != 2 || m[1] != "42" {
		t.Fatalf("match: %q", m)
	}
	var wg sync.WaitGroup
	got := make([]any, 8)
	for i := range got {
		wg.Go(func() { got[i] = re() })
	}
	wg.Wait()
	for _, g := range got {
		if g != re() {
			t.Fatal("two calls compiled two regexps")
		}
	}
	bad := New(`(`)
	defer func() {
		if recover() == nil {
			t.Fatal("an invalid pattern did not panic on first use")
		}
	}()
	bad()
}

// eager lists what builds a value at package initialisation that only
// some commands use: each is paid at every CLI start.
var eager = map[string]bool{
	"regexp.MustCompile": true, "regexp.Compile": true, "regexp.MustCompilePOSIX": true,
	"template.Must": true,
}

// TestNoPatternCompiledAtStart walks the module's non-test sources and
// fails on a package-level var that compiles a regular expression or
// parses a template: declare it with New (or sync.OnceValue) instead.
func TestNoPatternCompiledAtStart(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || name == "test" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.VAR {
				continue
			}
			for _, spec := range gen.Specs {
				for _, v := range spec.(*ast.ValueSpec).Values {
					call, ok := v.(*ast.CallExpr)
					if !ok {
						continue
					}
					sel, ok := call.Fun.(*ast.SelectorExpr)
					if !ok {
						continue
					}
					pkg, ok := sel.X.(*ast.Ident)
					if ok && eager[pkg.Name+"."+sel.Sel.Name] {
						t.Errorf("%s: %s.%s in a package-level var runs at every start of polyvisor: use lazyre.New or sync.OnceValue", fset.Position(call.Pos()), pkg.Name, sel.Sel.Name)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked %d Go files under %s: not the module's tree", checked, root)
	}
}
