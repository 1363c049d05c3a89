package raft

import (
	"go/build"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// forbidden are the standard packages the protocol must not use, with their
// subpackages: the network, the operating system, clocks, locks and logging
// belong to the driver (docs/design.md §1), and a core that used them would
// no longer be deterministic.
var forbidden = []string{"net", "os", "time", "sync", "log"}

// TestImportsStayPure fails when a non-test file of the package imports
// anything outside the standard library, or any forbidden package.
func TestImportsStayPure(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	require.NoError(t, err)
	require.NotEmpty(t, pkg.GoFiles)
	// Files left out of this build by their tags count too.
	files := append([]string(nil), pkg.GoFiles...)
	for _, name := range pkg.IgnoredGoFiles {
		if !strings.HasSuffix(name, "_test.go") {
			files = append(files, name)
		}
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(pkg.Dir, name), nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			require.NoError(t, err)
			require.Truef(t, isStandard(path), "%s imports %s, which is not in the standard library", name, path)
			for _, bad := range forbidden {
				require.Falsef(t, path == bad || strings.HasPrefix(path, bad+"/"),
					"%s imports %s: the protocol uses no %s (docs/design.md §1)", name, path, bad)
			}
		}
	}
}

// isStandard: standard import paths have no dot in their first element.
func isStandard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func TestIsStandard(t *testing.T) {
	require.True(t, isStandard("encoding/binary"))
	require.True(t, isStandard("slices"))
	require.False(t, isStandard("github.com/vmihailenco/msgpack/v5"))
	require.False(t, isStandard("golang.org/x/sync/semaphore"))
}
