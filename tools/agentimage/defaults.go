package main

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
)

// MainModule is the module path of the repository the agent is built from.
const MainModule = "github.com/kloop/kloop"

// FindRepo walks up from dir to the directory whose go.mod declares MainModule.
func FindRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+MainModule+"\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of module %s above %s; pass --dir", MainModule, dir)
		}
	}
}

// InterceptDefaults is what kube/intercept/inject.go declares for the agent
// image: DefaultImage() is Repository + ":" + Version.
type InterceptDefaults struct {
	Repository string // DefaultImageRepository
	Version    string // the initial value of Version (overridden by -ldflags -X)
}

// Image is intercept.DefaultImage() for a binary linked with version (the
// source's Version when version is empty).
func (d InterceptDefaults) Image(version string) string {
	if version == "" {
		version = d.Version
	}
	return d.Repository + ":" + version
}

// interceptFile is where DefaultImage is declared, relative to the repository.
const interceptFile = "kube/intercept/inject.go"

// InterceptVersionVar is the -X target that sets intercept.Version.
const InterceptVersionVar = MainModule + "/kube/intercept.Version"

// ReadInterceptDefaults reads DefaultImageRepository and Version from
// kube/intercept/inject.go without importing the package (which would pull
// client-go into this module). It fails loudly if their shape changes.
func ReadInterceptDefaults(repo string) (InterceptDefaults, error) {
	path := filepath.Join(repo, interceptFile)
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return InterceptDefaults{}, err
	}
	var d InterceptDefaults
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || (gd.Tok != token.CONST && gd.Tok != token.VAR) {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					return d, err
				}
				switch {
				case gd.Tok == token.CONST && n.Name == "DefaultImageRepository":
					d.Repository = s
				case gd.Tok == token.VAR && n.Name == "Version":
					d.Version = s
				}
			}
		}
	}
	if d.Repository == "" || d.Version == "" {
		return d, errors.New(path + ": no string const DefaultImageRepository and var Version; the agent image default needs updating")
	}
	return d, nil
}
