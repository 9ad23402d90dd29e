package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// writers2SV are the calls that change a user's 2SV state. Only package
// mfa (the lifecycle service) makes them; authn defines the primitives mfa
// composes, and store implements them.
var writers2SV = map[string]bool{
	"CreateTOTP": true, "DeleteTOTP": true, "ReplaceRecoveryCodes": true, "PutPendingTOTP": true, "DeletePendingTOTP": true,
	"SetMFARemoved": true, "ClearMFARemoved": true, "SpendStepUp": true, "CreateResetRequest": true, "DecideResetRequest": true,
	"CreateUnlinkIntent": true, "ConsumeUnlinkIntent": true, "EnrollTOTP": true, "NewPendingTOTP": true,
	"CreateWebAuthnCredential": true, "DeleteWebAuthnCredential": true, "RenameWebAuthnCredential": true,
}

// allowed2SV are the folders whose code may make those calls, and why.
var allowed2SV = map[string]string{
	"mfa":               "the 2SV lifecycle service",
	"authn":             "defines the primitives mfa composes (EnrollTOTP, NewPendingTOTP)",
	"store":             "implements them",
	"cmd/latchkey-load": "the benchmark's bulk seeder writes test users directly, for speed",
}

// TestOnlyTheLifecycleServiceWrites2SV fails when production code outside
// the lifecycle service changes 2SV state itself, which is how a guarantee
// enforced in one entry point gets skipped by another.
func TestOnlyTheLifecycleServiceWrites2SV(t *testing.T) {
	root := "../.."
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		for dir := range allowed2SV {
			if strings.HasPrefix(rel, dir+"/") {
				return nil
			}
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && writers2SV[sel.Sel.Name] {
				t.Errorf("%s: %s changes 2SV state outside package mfa; call the lifecycle service", fset.Position(call.Pos()), sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
