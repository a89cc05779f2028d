package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestTrialBoot(t *testing.T) {
	pad := strings.Repeat(" ", 40)
	line := "console=ttyS0 root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001/PARTNROFF=1 ro init=/gokrazy/init panic=10"
	tests := []struct {
		name, in string
		active   int
		want     string // "" for an error
	}{
		{"cmdline.txt", line + pad + "\x00\x00", 3,
			strings.Replace(line, "PARTNROFF=1", "PARTNROFF=2", 1) + tryMarker + pad[len(tryMarker):] + "\x00\x00"},
		{"loader entry", "title gokrazy\nlinux /vmlinuz\noptions " + line + pad, 2,
			"title gokrazy\nlinux /vmlinuz\noptions " + line + tryMarker + pad[len(tryMarker):]},
		{"no room", line + "   \x00", 2, ""},
		{"no command line", "nothing here", 2, ""},
		{"already a trial", line + tryMarker + pad, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			err := trialBoot(b, tt.active)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("no error; got %q", b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, []byte(tt.want)) || len(b) != len(tt.in) {
				t.Fatalf("got  %q\nwant %q", b, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"2G": 2 << 30, "512M": 512 << 20, "64K": 64 << 10, "1000": 1000} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1M", "1T", "x"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}

// FuzzTrialBoot: whatever a boot partition holds, the patch never panics
// and never changes its length.
func FuzzTrialBoot(f *testing.F) {
	f.Add([]byte("root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001/PARTNROFF=1 ro"+strings.Repeat(" ", 40)), 3)
	f.Add([]byte("root=PARTUUID=/PARTNROFF="), 2)
	f.Add([]byte("options root=PARTUUID=x/PARTNROFF=2\nroot=PARTUUID="), 2)
	f.Fuzz(func(t *testing.T, b []byte, active int) {
		if active != 2 && active != 3 {
			return
		}
		n := len(b)
		trialBoot(b, active)
		if len(b) != n {
			t.Fatal("length changed")
		}
	})
}
