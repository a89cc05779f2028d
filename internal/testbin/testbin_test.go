package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644)
	t.Chdir(dir)
	bin := Build(t, ".")
	if filepath.Base(bin) != filepath.Base(dir) {
		t.Errorf("program named %s, want the package directory's name", bin)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello" {
		t.Fatalf("%s: %v %q", bin, err, out)
	}
	if again := Build(t, "."); again != bin {
		t.Errorf("built twice: %s, %s", bin, again)
	}
}

func TestBuildError(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := build("./nothing"); err == nil || !strings.Contains(err.Error(), "go build ./nothing") {
		t.Fatalf("building nothing: %v", err)
	}
}
