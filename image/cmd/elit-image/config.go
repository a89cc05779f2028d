package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// elitPackage is the import path of the elit program in the instance configs.
const elitPackage = "elit.local/elit/cmd/elit"

// gokrazy's update endpoint: HTTPS on updatePort (443 is left to elit's
// ACME TLS-ALPN-01 challenges), and port 80 only redirects to it.
const (
	updatePort     = 8443
	plainHTTPPort  = 80
	statusPort     = 8025
	defaultSMTPort = 25
)

// writeInstanceConfig writes the gokrazy instance config of one build: the
// committed one plus the password, the TLS certificate and key (gokrazy
// serves them on its update endpoint), the version and elit's flags.
func writeInstanceConfig(from, to string, o *buildOptions) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	// monogok reads UseTLS's certificate and key files (paths relative
	// to the source: they land in the SBOM's digest of the config) and
	// writes them to the root file system, where gokrazy serves them.
	certPath, keyPath := filepath.Join(filepath.Dir(to), "tls.pem"), filepath.Join(filepath.Dir(to), "tls.key")
	if err := os.WriteFile(certPath, o.keys.certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, o.keys.keyPEM, 0o600); err != nil {
		return err
	}
	relCert, err1 := filepath.Rel(o.src, certPath)
	relKey, err2 := filepath.Rel(o.src, keyPath)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	cfg["Update"] = map[string]any{"HTTPPassword": o.password, "HTTPPort": fmt.Sprint(plainHTTPPort),
		"HTTPSPort": fmt.Sprint(updatePort), "UseTLS": relCert + "," + relKey}
	pcs, _ := cfg["PackageConfig"].(map[string]any)
	if pcs == nil {
		pcs = map[string]any{}
		cfg["PackageConfig"] = pcs
	}
	if pkgs, _ := cfg["Packages"].([]any); !slices.Contains(pkgs, any(elitPackage)) {
		return writeJSON(to, cfg) // no elit in it (the hello baseline)
	}
	pc, _ := pcs[elitPackage].(map[string]any)
	if pc == nil {
		pc = map[string]any{}
		pcs[elitPackage] = pc
	}
	var flags []any
	if fl, ok := pc["CommandLineFlags"].([]any); ok {
		flags = fl
	}
	if o.domain != "" {
		flags = append(flags, "-domain="+o.domain)
	}
	if o.hostname != "" {
		flags = append(flags, "-hostname="+o.hostname)
	}
	for _, f := range o.elitFlags {
		flags = append(flags, f)
	}
	pc["CommandLineFlags"] = flags
	// -s -w: no symbol tables (the root file system is a quarter
	// smaller); -trimpath comes with GOFLAGS (runMonogok).
	pc["GoBuildFlags"] = []any{"-ldflags=-s -w -buildid= -X main.version=" + o.version}
	return writeJSON(to, cfg)
}

// settingsDigest is 8 hex digits of a digest of what goes into the root
// file system besides the source: two builds with other settings get other
// versions.
func (o *buildOptions) settingsDigest() string {
	h := sha256.New()
	for _, s := range append([]string{o.target, o.domain, o.hostname, o.password, string(o.keys.certPEM)}, o.elitFlags...) {
		fmt.Fprintf(h, "%d:%s,", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))[:8]
}

func writeJSON(path string, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// randomPassword is 20 characters from an alphabet without look-alikes.
func randomPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
