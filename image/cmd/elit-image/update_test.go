package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// boot is what an appliance runs after a (re)boot.
type boot struct {
	version string
	trial   bool
}

// fakeAppliance answers gokrazy's update protocol and elit's status.json
// over TLS with a key of its own, and boots, at each POST /reboot, the
// next of boots. bad makes it report a CRC-32 other than that of what it
// received (a short write).
type fakeAppliance struct {
	mu      sync.Mutex
	calls   []string
	bad     bool
	pw      string // when set, the password it takes (else any)
	now     boot
	boots   []boot
	started time.Time
}

func (f *fakeAppliance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if _, pw, _ := r.BasicAuth(); f.pw != "" && pw != f.pw {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/update/features":
		io.WriteString(w, "partuuid,updatehash,gpt,")
	case "/status.json":
		root := 2
		if f.now.trial {
			root = 3 // the command line names the old root
		}
		json.NewEncoder(w).Encode(map[string]any{"version": f.now.version, "started": f.started,
			"boot": map[string]any{"root_partition": root, "trial": f.now.trial}})
	case "/update/root", "/update/boot":
		b, _ := io.ReadAll(r.Body)
		if f.bad {
			b = b[:len(b)/2]
		}
		fmt.Fprintf(w, "%x", crc32.ChecksumIEEE(b)) // as gokrazy prints it
	case "/reboot":
		if len(f.boots) > 0 {
			f.now, f.boots = f.boots[0], f.boots[1:]
		}
		f.started = f.started.Add(time.Minute)
	}
}

// serve starts the fake on TLS with a key made for it, and an SMTP
// greeter; it returns the endpoints and the key's pin.
func (f *fakeAppliance) serve(t *testing.T) (endpoints, string) {
	t.Helper()
	certPEM, keyPEM, err := makeKeyPair("fake.example.org")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 fake ESMTP\r\n")
			c.Close()
		}
	}()
	pin, _ := pinOf(certPEM)
	host := strings.TrimPrefix(srv.URL, "https://")
	return endpoints{update: host, status: host, smtp: l.Addr().String()}, pin
}

// fakeImage is a small image with a boot command line to patch.
func fakeImage(t *testing.T) string {
	t.Helper()
	needTools(t, "sfdisk")
	img := testImage(t)
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte("console=ttyS0 root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001/PARTNROFF=1 ro"+strings.Repeat(" ", 64)), 2048*512+4096)
	f.Close()
	return img
}

// TestUpdate drives the update against a fake appliance: the calls it
// makes, in order, tell how many reboots an update costs and when it
// makes the new version permanent.
func TestUpdate(t *testing.T) {
	defer func(s, p time.Duration) { settle, poll = s, p }(settle, poll)
	settle, poll = 10*time.Millisecond, 10*time.Millisecond
	v1, v2 := boot{"v1", false}, boot{"v2", true}
	for _, c := range []struct {
		name  string
		bad   bool
		now   boot
		boots []boot
		err   string   // "" for success
		calls []string // the update's calls after features and status
	}{
		{name: "healthy trial: permanent without a second reboot", now: v1, boots: []boot{v2},
			calls: []string{"PUT /update/root", "PUT /update/boot", "POST /reboot", "POST /update/switch", "POST /sync"}},
		{name: "broken trial: the old version back by itself", now: v1, boots: []boot{v1},
			err: "v1 is running again", calls: []string{"PUT /update/root", "PUT /update/boot", "POST /reboot"}},
		{name: "bad upload: nothing switched, no reboot", bad: true, now: v1,
			err: "wrote something else", calls: []string{"PUT /update/root"}},
		{name: "still in the last update's trial: a reboot first", now: boot{"v0", true}, boots: []boot{v1, v2},
			calls: []string{"POST /reboot", "PUT /update/root", "PUT /update/boot", "POST /reboot", "POST /update/switch", "POST /sync"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeAppliance{bad: c.bad, now: c.now, boots: c.boots, started: time.Now()}
			ep, pin := f.serve(t)
			d, err := (&deviceFlags{}).device(&ep, "pw", []string{pin})
			if err != nil {
				t.Fatal(err)
			}
			o := &updateOptions{ep: ep, image: fakeImage(t), version: "v2", timeout: 10 * time.Second}
			err = update(context.Background(), d, o, io.Discard, io.Discard)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("update: %v, want %q", err, c.err)
			}
			var calls []string
			for _, call := range f.calls {
				if call != "GET /update/features" && call != "GET /status.json" {
					calls = append(calls, call)
				}
			}
			if !slices.Equal(calls, c.calls) {
				t.Errorf("calls %q\nwant  %q", calls, c.calls)
			}
		})
	}
}

// TestWrongPassword: an image built without the running appliance's
// password (a new random one) is refused at the first request, with a
// message that says why, and nothing is sent.
func TestWrongPassword(t *testing.T) {
	f := &fakeAppliance{pw: "right", now: boot{"v1", false}, started: time.Now()}
	ep, pin := f.serve(t)
	d, err := (&deviceFlags{}).device(&ep, "new-random", []string{pin})
	if err != nil {
		t.Fatal(err)
	}
	o := &updateOptions{ep: ep, image: fakeImage(t), version: "v2", timeout: 10 * time.Second}
	err = update(context.Background(), d, o, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "refused the password") {
		t.Fatalf("update with a wrong password: %v", err)
	}
	if !slices.Equal(f.calls, []string{"GET /update/features"}) {
		t.Errorf("calls %q: more than the first request", f.calls)
	}
}

// TestPinnedTLS: a client that pins a key other than the appliance's
// stops at the TLS handshake: no request reaches the appliance, so neither
// the password nor the database is sent.
func TestPinnedTLS(t *testing.T) {
	f := &fakeAppliance{now: boot{"v1", false}, started: time.Now()}
	ep, pin := f.serve(t)
	other, _, err := makeKeyPair("other.example.org")
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := pinOf(other)
	db := filepath.Join(t.TempDir(), "users.json")
	os.WriteFile(db, []byte(`[{"name":"din","mailboxes":["din@example.net"]}]`), 0o644)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	for _, c := range []struct {
		name  string
		args  []string
		err   string
		calls int
	}{
		{"wrong pin", []string{"-pin", wrong}, "not the pinned one", 0},
		{"right pin", []string{"-pin", pin}, "", 1},
		{"no pin", nil, "no TLS key to pin", 0},
		{"plain HTTP to a TLS port", []string{"-insecure-http"}, "HTTP", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.mu.Lock()
			f.calls = nil
			f.mu.Unlock()
			args := append([]string{"db", "push", "-host", ep.status, "-password-file", pw}, append(c.args, db)...)
			var out strings.Builder
			code := run(context.Background(), args, nil, &out, &out)
			if c.err == "" && code != 0 || c.err != "" && (code == 0 || !strings.Contains(out.String(), c.err)) {
				t.Errorf("exit %d: %s; want %q", code, out.String(), c.err)
			}
			if len(f.calls) != c.calls {
				t.Errorf("the appliance got %q", f.calls)
			}
		})
	}
}
