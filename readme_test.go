package exraft_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadmeGoBlocksAreExamples keeps README.md's Go code compiling and
// running. A README cannot be compiled, but an examples file can, and go
// test runs every Example that has an // Output: comment; so each ```go
// block of the README must appear in an examples file, line for line:
// statements inside such an Example, declarations where such an Example
// uses them, imports among the file's imports. Only whitespace at either
// end of a line, and runs of it inside one, may differ: the README may
// indent with spaces, and gofmt realigns the comments of the examples
// file whenever a neighbouring line changes.
func TestReadmeGoBlocksAreExamples(t *testing.T) {
	blocks := readmeGoBlocks(t, "README.md")
	require.NotEmpty(t, blocks, "README.md has no ```go blocks: has its fence changed?")
	ex := loadExamples(t)

	for _, b := range blocks {
		t.Run(fmt.Sprintf("line%d", b.line), func(t *testing.T) {
			ex.check(t, b)
		})
	}
}

// readmeBlock is one ```go block of README.md.
type readmeBlock struct {
	line int      // the README line of the block's first line of code
	code []string // as written
}

// first is how failure messages name the block, next to its line number,
// since line numbers move whenever the README's prose changes.
func (b readmeBlock) first() string {
	for _, l := range b.code {
		if s := strings.TrimSpace(l); s != "" {
			return s
		}
	}
	return ""
}

func readmeGoBlocks(t *testing.T, path string) []readmeBlock {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var blocks []readmeBlock
	var open *readmeBlock
	for i, line := range strings.Split(string(data), "\n") {
		fence := strings.TrimSpace(line)
		switch {
		case open == nil && fence == "```go":
			open = &readmeBlock{line: i + 2}
		case open != nil && fence == "```":
			blocks = append(blocks, *open)
			open = nil
		case open != nil:
			open.code = append(open.code, line)
		}
	}
	if open != nil {
		require.Failf(t, "unclosed block", "%s: the ```go block starting at line %d is never closed", path, open.line)
	}
	return blocks
}

// examples is what the examples files offer a README block to match.
type examples struct {
	fset  *token.FileSet
	files []exampleFile
	// runnable holds the Example functions that go test runs rather than
	// only compiles: those with an output comment.
	runnable map[string]bool
	// usedBy maps the identifiers that runnable Examples refer to onto
	// those Examples, so that a README declaration is known to run, not
	// just to compile.
	usedBy  map[string][]string
	imports map[string]bool
}

type exampleFile struct {
	name string
	raw  []string
	norm []string // raw, normalised line by line
	ast  *ast.File
}

func loadExamples(t *testing.T) *examples {
	paths, err := filepath.Glob("example*_test.go")
	require.NoError(t, err)
	require.NotEmpty(t, paths, "no example*_test.go file to hold README.md's code")

	ex := &examples{
		fset:     token.NewFileSet(),
		runnable: map[string]bool{},
		usedBy:   map[string][]string{},
		imports:  map[string]bool{},
	}
	var asts []*ast.File
	for _, p := range paths {
		src, err := os.ReadFile(p)
		require.NoError(t, err)
		f, err := parser.ParseFile(ex.fset, p, src, parser.ParseComments)
		require.NoError(t, err)
		asts = append(asts, f)
		raw := strings.Split(string(src), "\n")
		ex.files = append(ex.files, exampleFile{name: p, raw: raw, norm: normalise(raw), ast: f})
		for _, imp := range f.Imports {
			ex.imports[importKey(imp)] = true
		}
	}
	for _, e := range doc.Examples(asts...) {
		if e.Output == "" && !e.EmptyOutput {
			continue
		}
		name := "Example" + e.Name
		ex.runnable[name] = true
		seen := map[string]bool{}
		ast.Inspect(e.Code, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && !seen[id.Name] {
				seen[id.Name] = true
				ex.usedBy[id.Name] = append(ex.usedBy[id.Name], name)
			}
			return true
		})
	}
	return ex
}

func normalise(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.Join(strings.Fields(l), " ")
	}
	return out
}

func importKey(imp *ast.ImportSpec) string {
	path, _ := strconv.Unquote(imp.Path.Value)
	if imp.Name != nil {
		return imp.Name.Name + " " + strconv.Quote(path)
	}
	return strconv.Quote(path)
}

func (ex *examples) check(t *testing.T, b readmeBlock) {
	src := strings.Join(b.code, "\n")
	// Declarations parse as a file's body; statements only inside a function.
	const declHead, stmtHead = "package p\n", "package p\nfunc _() {\n"
	decls, declErr := parser.ParseFile(token.NewFileSet(), "README.md", declHead+src, 0)
	if declErr != nil {
		_, stmtErr := parser.ParseFile(token.NewFileSet(), "README.md", stmtHead+src+"\n}", 0)
		if stmtErr != nil {
			// The reading that parsed further is the one the author meant.
			line, col, msg := b.parseError(declErr, declHead)
			if l, c, m := b.parseError(stmtErr, stmtHead); l > line || l == line && c > col {
				line, msg = l, m
			}
			require.Failf(t, "README.md block is not Go",
				"README.md block starting at line %d (%q) does not parse, as declarations or as statements: README.md:%d: %s. Fix it, or, if it is not Go that users paste, fence it as ```text", b.line, b.first(), line, msg)
		}
		decls = nil
	}
	if decls != nil && onlyImports(decls) {
		for _, imp := range decls.Imports {
			require.Truef(t, ex.imports[importKey(imp)],
				"README.md block starting at line %d (%q) imports %s, which no examples file imports: import it there, or update the README.md block", b.line, b.first(), importKey(imp))
		}
		t.Logf("README.md:%d %q is imported by the examples files", b.line, b.first())
		return
	}

	want, skipped := trimBlank(normalise(b.code))
	f, first, last, found := ex.find(want)
	if !found {
		require.Fail(t, "README.md block drifted", ex.drift(b, want, skipped))
	}

	if decls != nil {
		for _, name := range declaredNames(decls) {
			require.NotEmptyf(t, ex.usedBy[name],
				"README.md block starting at line %d (%q) declares %s, which no Example with an // Output: comment refers to, so it compiles but never runs: use it in one", b.line, b.first(), name)
			t.Logf("README.md:%d %q declares %s (%s:%d), run by %s", b.line, b.first(), name, f.name, first+1, strings.Join(ex.usedBy[name], ", "))
		}
		return
	}
	fn := ex.enclosingFunc(f, first, last)
	require.Truef(t, fn != "" && ex.runnable[fn],
		"README.md block starting at line %d (%q) is in %s at %s:%d, which is not an Example with an // Output: comment, so go test would not run it: move it into one", b.line, b.first(), describe(fn), f.name, first+1)
	t.Logf("README.md:%d %q is the body of %s (%s:%d)", b.line, b.first(), fn, f.name, first+1)
}

// parseError places the first error of parsing the block behind head on
// the README's own lines.
func (b readmeBlock) parseError(err error, head string) (line, col int, msg string) {
	var list scanner.ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		return b.line, 0, err.Error()
	}
	return b.line + list[0].Pos.Line - 1 - strings.Count(head, "\n"), list[0].Pos.Column, list[0].Msg
}

func onlyImports(f *ast.File) bool {
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); !ok || g.Tok != token.IMPORT {
			return false
		}
	}
	return len(f.Decls) > 0
}

// trimBlank drops the blank lines at either end, which the README keeps
// for looks and a function body cannot have; skipped is how many led.
func trimBlank(lines []string) (trimmed []string, skipped int) {
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
		skipped++
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines, skipped
}

// find returns the lines, counted from 0, where want runs back to back in
// an examples file.
func (ex *examples) find(want []string) (f *exampleFile, first, last int, found bool) {
	if len(want) == 0 {
		return nil, 0, 0, false
	}
	for i := range ex.files {
		norm := ex.files[i].norm
	start:
		for s := 0; s+len(want) <= len(norm); s++ {
			for j, w := range want {
				if norm[s+j] != w {
					continue start
				}
			}
			return &ex.files[i], s, s + len(want) - 1, true
		}
	}
	return nil, 0, 0, false
}

// enclosingFunc names the function whose body holds lines first to last.
func (ex *examples) enclosingFunc(f *exampleFile, first, last int) string {
	for _, d := range f.ast.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		open := ex.fset.Position(fd.Body.Lbrace).Line - 1
		end := ex.fset.Position(fd.Body.Rbrace).Line - 1
		if open < first && last < end {
			return declName(fd)
		}
	}
	return ""
}

func describe(fn string) string {
	if fn == "" {
		return "no function"
	}
	return fn
}

// declaredNames lists what a README block declares, by the names an
// Example would use to reach it: a method counts as its receiver's type.
func declaredNames(f *ast.File) []string {
	var names []string
	add := func(name string) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				add(d.Name.Name)
			} else {
				add(receiverType(d))
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					add(s.Name.Name)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						add(n.Name)
					}
				}
			}
		}
	}
	return names
}

func receiverType(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return ""
	}
	typ := fd.Recv.List[0].Type
	for {
		switch e := typ.(type) {
		case *ast.StarExpr:
			typ = e.X
		case *ast.IndexExpr:
			typ = e.X
		case *ast.IndexListExpr:
			typ = e.X
		case *ast.Ident:
			return e.Name
		default:
			return ""
		}
	}
}

func declName(d ast.Decl) string {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if r := receiverType(d); r != "" {
			return r + "." + d.Name.Name
		}
		return d.Name.Name
	case *ast.GenDecl:
		if d.Tok == token.IMPORT {
			return "the imports"
		}
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				return "type " + s.Name.Name
			case *ast.ValueSpec:
				return s.Names[0].Name
			}
		}
	}
	return "a declaration"
}

// drift explains a block that no examples file holds: which declaration
// it most likely came from, and the first line where the two part ways,
// so that whoever changed one side can bring the other along.
func (ex *examples) drift(b readmeBlock, want []string, skipped int) string {
	m, ok := ex.nearest(want)
	if !ok {
		return fmt.Sprintf("README.md block starting at line %d (%q) is not in any examples file and resembles nothing there, so nothing compiles or runs it: make it the body of a new Example with an // Output: comment, or, if it is not Go that users paste, fence it as ```text",
			b.line, b.first())
	}
	ours := "nothing there"
	if in(want, m.readme) {
		ours = fmt.Sprintf("%q", strings.TrimSpace(b.code[skipped+m.readme]))
	}
	theirs := "nothing there"
	if in(m.file.raw, m.line) {
		theirs = fmt.Sprintf("%q", strings.TrimSpace(m.file.raw[m.line]))
	}
	return fmt.Sprintf("README.md block starting at line %d (%q) has drifted from %s in %s.\n"+
		"They differ at README.md:%d, which has %s, where %s:%d has %s.\n"+
		"Update the README.md block starting at line %d to match %s, or the reverse.",
		b.line, b.first(), m.decl, m.file.name,
		b.line+skipped+m.readme, ours, m.file.name, m.line+1, theirs,
		b.line, m.decl)
}

// mismatch is where a README block and its likeliest source part ways.
type mismatch struct {
	file   *exampleFile
	decl   string // the declaration holding the lines that agree
	readme int    // the differing line of the block, from 0
	line   int    // the examples file's line beside it, from 0
}

// nearest lines want up with the examples file where the longest run of
// its lines agrees: from its first line down, or from its last line up,
// whichever is longer, so that a change to the block's first line is
// placed as well as one further on.
func (ex *examples) nearest(want []string) (m mismatch, ok bool) {
	best := 0
	for i := range ex.files {
		f := &ex.files[i]
		for at := range f.norm {
			down := 0
			for in(want, down) && in(f.norm, at+down) && want[down] == f.norm[at+down] {
				down++
			}
			if down > best {
				best = down
				m = mismatch{file: f, decl: ex.declsIn(f, at, at+down-1), readme: down, line: at + down}
			}
			up := 0
			last := len(want) - 1
			for in(want, last-up) && in(f.norm, at-up) && want[last-up] == f.norm[at-up] {
				up++
			}
			if up > best {
				best = up
				m = mismatch{file: f, decl: ex.declsIn(f, at-up+1, at), readme: last - up, line: at - up}
			}
		}
	}
	return m, best > 0
}

// declsIn names the top-level declarations that lines first to last,
// counted from 0, touch: one Example for a block of statements, several
// for a type and its methods.
func (ex *examples) declsIn(f *exampleFile, first, last int) string {
	var names []string
	for _, d := range f.ast.Decls {
		if start, end := ex.span(d); start <= last && first <= end {
			names = append(names, declName(d))
		}
	}
	if len(names) == 0 {
		return "the package clause"
	}
	return strings.Join(names, ", ")
}

// span is a declaration's lines, counted from 0, doc comment included:
// a README declaration block usually starts with that comment.
func (ex *examples) span(d ast.Decl) (start, end int) {
	pos := d.Pos()
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Doc != nil {
			pos = d.Doc.Pos()
		}
	case *ast.GenDecl:
		if d.Doc != nil {
			pos = d.Doc.Pos()
		}
	}
	return ex.fset.Position(pos).Line - 1, ex.fset.Position(d.End()).Line - 1
}

func in(lines []string, i int) bool { return i >= 0 && i < len(lines) }
