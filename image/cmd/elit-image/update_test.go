package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// fakeGokrazy answers the update protocol; bad makes it report a CRC-32
// other than that of what it received (a short write).
type fakeGokrazy struct {
	mu    sync.Mutex
	calls []string
	bad   bool
}

func (f *fakeGokrazy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	switch r.URL.Path {
	case "/update/features":
		io.WriteString(w, "partuuid,updatehash,gpt,")
	case "/status.json":
		json.NewEncoder(w).Encode(map[string]any{"version": "v1", "boot": map[string]any{"root_partition": 2}})
	case "/update/root", "/update/boot":
		b, _ := io.ReadAll(r.Body)
		if f.bad {
			b = b[:len(b)/2]
		}
		fmt.Fprintf(w, "%x", crc32.ChecksumIEEE(b)) // as gokrazy prints it
	}
}

func TestUpdateRefusesBadUpload(t *testing.T) {
	needTools(t, "sfdisk")
	img := testImage(t)
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte("console=ttyS0 root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001/PARTNROFF=1 ro"+strings.Repeat(" ", 64)), 2048*512+4096)
	f.Close()
	fake := &fakeGokrazy{bad: true}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	o := &updateOptions{deviceFlags: deviceFlags{host: host, password: "pw"}, image: img, status: host, smtp: host, version: "v2"}
	err := update(context.Background(), o, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "wrote something else") {
		t.Fatalf("update with a short write: %v", err)
	}
	for _, c := range fake.calls {
		if c == "POST /reboot" || c == "POST /update/switch" || c == "PUT /update/boot" {
			t.Fatalf("after a bad root upload the tool went on: %v", fake.calls)
		}
	}
}
