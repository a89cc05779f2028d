// Package testbin builds Go programs for tests that run them as separate
// processes, as a user or a peer would: each once per test process.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

type program struct {
	once sync.Once
	path string
	err  error
}

var (
	mu       sync.Mutex
	dir      string
	programs = map[string]*program{}
)

// Build returns the path of the program in package pkg, as go build names
// it ("." is the package under test), built at the first call; t fails when
// it does not build. The package's TestMain calls Run, which removes it.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	p := programs[pkg]
	if p == nil {
		p = &program{}
		programs[pkg] = p
	}
	mu.Unlock()
	p.once.Do(func() { p.path, p.err = build(pkg) })
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.path
}

func build(pkg string) (string, error) {
	name := path.Base(pkg)
	if pkg == "." {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		name = filepath.Base(wd)
	}
	mu.Lock()
	if dir == "" {
		d, err := os.MkdirTemp("", "testbin-")
		if err != nil {
			mu.Unlock()
			return "", err
		}
		dir = d
	}
	// One directory per package: two packages may end in the same name.
	out, err := os.MkdirTemp(dir, name+"-")
	mu.Unlock()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(out, name)
	if b, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin, nil
}

// Run runs the tests, then removes the programs Build made; a TestMain
// calls os.Exit(testbin.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	return code
}
