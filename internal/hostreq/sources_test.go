package hostreq

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// guestSide are the trees whose code runs inside guests, not on the host:
// what they run is the guest's business, not make deps'.
var guestSide = []string{"cmd/polyvisor-agent", "cmd/polyvisor-probe", "internal/agent", "internal/evaluation/probe", "internal/growfs"}

// TestHostToolsAreFoundOnlyThroughTheList reads every Go file of the tree and
// fails for a host program run by a literal name the list does not declare,
// and for any exec.LookPath outside this package: a look-up elsewhere could
// find, or miss, a tool make deps is not known to install.
func TestHostToolsAreFoundOnlyThroughTheList(t *testing.T) {
	root := repoRoot()
	var problems []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || d.Name() == "node_modules" || isGuestSide(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		found, err := scanFile(path, rel)
		problems = append(problems, found...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func isGuestSide(rel string) bool {
	for _, dir := range guestSide {
		if rel == dir {
			return true
		}
	}
	return false
}

// scanFile returns the problems of one file.
func scanFile(path, rel string) ([]string, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", rel, err)
	}
	ours := filepath.Dir(rel) == "internal/hostreq"
	var problems []string
	report := func(pos token.Pos, format string, args ...any) {
		p := fset.Position(pos)
		problems = append(problems, fmt.Sprintf("%s:%d: %s", rel, p.Line, fmt.Sprintf(format, args...)))
	}
	checkName := func(pos token.Pos, expr ast.Expr) {
		lit, ok := expr.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return // computed: found through Lookup or Need by construction
		}
		name, _ := strconv.Unquote(lit.Value)
		if isOwnBinary(name) {
			return
		}
		if _, ok := Find(name); !ok {
			report(pos, "runs host program %q, which internal/hostreq does not declare", name)
		}
	}
	ast.Inspect(file, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			pkg, fun := selector(n.Fun)
			if pkg != "exec" {
				return true
			}
			switch {
			case fun == "LookPath" && !ours && !ownBinary(n.Args):
				report(n.Pos(), "exec.LookPath: find host tools with hostreq.Lookup (code) or hostreq.Need (tests)")
			case fun == "Command" && len(n.Args) > 0:
				checkName(n.Pos(), n.Args[0])
			case fun == "CommandContext" && len(n.Args) > 1:
				checkName(n.Pos(), n.Args[1])
			}
		case *ast.CompositeLit:
			if pkg, typ := selector(n.Type); pkg == "runcmd" && typ == "Cmd" {
				for _, elt := range n.Elts {
					if kv, ok := elt.(*ast.KeyValueExpr); ok {
						if key, ok := kv.Key.(*ast.Ident); ok && key.Name == "Name" {
							checkName(kv.Pos(), kv.Value)
						}
					}
				}
			}
		}
		return true
	})
	return problems, nil
}

// selector returns pkg and name of an expression pkg.name.
func selector(expr ast.Expr) (pkg, name string) {
	sel, ok := expr.(*ast.SelectorExpr)
	if !ok {
		return "", ""
	}
	x, ok := sel.X.(*ast.Ident)
	if !ok {
		return "", ""
	}
	return x.Name, sel.Sel.Name
}

// isOwnBinary reports whether name is one of the binaries make build makes.
func isOwnBinary(name string) bool { return strings.HasPrefix(filepath.Base(name), "polyvisor") }

// ownBinary reports whether a call's first argument names one of our binaries.
func ownBinary(args []ast.Expr) bool {
	if len(args) == 0 {
		return false
	}
	lit, ok := args[0].(*ast.BasicLit)
	if !ok {
		return false
	}
	name, _ := strconv.Unquote(lit.Value)
	return isOwnBinary(name)
}
