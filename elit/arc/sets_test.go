package arc

import (
	"strings"
	"testing"

	"elit.local/elit/dkim"
)

// set returns the three fields of instance i, AAR value given.
func set(i, aar string) string {
	return "ARC-Seal: i=" + i + "; cv=none; a=rsa-sha256; d=example.org; s=s; b=AAAA\r\n" +
		"ARC-Message-Signature: i=" + i + "; a=rsa-sha256; d=example.org; s=s; h=from; bh=AAAA; b=AAAA\r\n" +
		"ARC-Authentication-Results: " + aar + "\r\n"
}

func TestParseSets(t *testing.T) {
	cases := []struct {
		name, header string
		sets, high   int
		err          string
	}{
		{"none", "From: a\r\n", 0, 0, ""},
		{"one", set("1", "i=1; mx.example.org; spf=pass"), 1, 1, ""},
		{"two", set("2", "i=2; mx; none") + "Received: x\r\n" + set("1", "i=1; mx; none"), 2, 2, ""},
		{"out of order", set("1", "i=1; mx; none") + set("2", " i = 2 ; mx; none"), 2, 2, ""},
		{"gap", set("1", "i=1; mx; none") + set("3", "i=3; mx; none"), 0, 3, "no ARC set with i=2"},
		{"duplicate", set("1", "i=1; mx; none") + set("1", "i=1; mx; none"), 0, 1, "two ARC-Seal fields with i=1"},
		{"missing", "ARC-Seal: i=1; cv=none\r\nARC-Authentication-Results: i=1; mx\r\n", 0, 1, "lacks ARC-Message-Signature"},
		{"zero", set("0", "i=0; mx; none"), 0, 0, "bad instance"},
		{"51", set("51", "i=51; mx; none"), 0, 0, "over 50"},
		{"AAR without i", set("1", "mx.example.org; i=1; none"), 0, 1, "does not start with i="},
		{"AAR without ;", set("1", "i=1 mx.example.org"), 0, 1, "no \";\""},
		{"seal without i", "ARC-Seal: cv=none\r\n", 0, 0, "no i= tag"},
		{"bad tag list", "ARC-Message-Signature: i=1;; a=b\r\n", 0, 0, "tag list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr, _, err := dkim.ParseHeader([]byte(c.header + "\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			sets, high, err := ParseSets(hdr)
			if len(sets) != c.sets || high != c.high || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Errorf("%d sets, highest %d, %v; want %d, %d, %q", len(sets), high, err, c.sets, c.high, c.err)
			}
			for i, s := range sets {
				if s.Instance != i+1 || !s.AAR.Is(aarName) || !s.AMS.Is(amsName) || !s.AS.Is(sealName) {
					t.Errorf("set %d: %+v", i, s)
				}
			}
		})
	}
}

func TestParseSeal(t *testing.T) {
	cases := []struct {
		v, err string
	}{
		{"i=1; cv=none; a=rsa-sha256; d=example.org; s=s; t=12; b=AAAA", ""},
		{"i=1; cv=pass; a=ed25519-sha256; d=example.org; s=s; b=AA AA; x=unknown", ""},
		{"i=1; cv=None; a=rsa-sha256; d=example.org; s=s; b=AAAA", "cv=None"},
		{"i=1; cv=none; a=rsa-sha1; d=example.org; s=s; b=AAAA", "a=rsa-sha1"},
		{"i=1; cv=none; a=rsa-sha256; d=***; s=s; b=AAAA", "d=***"},
		{"i=1; cv=none; a=rsa-sha256; d=example.org; s=s; t=-1; b=AAAA", "t=-1"},
		{"i=1; cv=none; a=rsa-sha256; d=example.org; s=s; h=from; b=AAAA", "h="},
		{"i=1; cv=none; a=rsa-sha256; d=example.org; s=s; b=", "b="},
		{"i=1; cv=none; a=rsa-sha256; d=example.org; b=AAAA", "no s="},
	}
	for _, c := range cases {
		_, err := parseSeal([]byte(c.v))
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %v, want %q", c.v, err, c.err)
		}
	}
}

// FuzzParseSets: the ARC set parser takes any header; what it accepts is
// a chain 1..n of complete sets.
func FuzzParseSets(f *testing.F) {
	f.Add([]byte(set("1", "i=1; mx.example.org; spf=pass")))
	f.Add([]byte(set("2", "i=2; mx; none") + set("1", "i=1; mx; none")))
	f.Add([]byte(set("1", "i=1; mx; none") + set("3", "i=3; mx; none")))
	f.Add([]byte("ARC-Seal: i=1; cv=none\r\nARC-Authentication-Results: i=1; mx\r\n"))
	f.Add([]byte("ARC-Authentication-Results: i =\r\n 07 ;\r\n"))
	f.Add([]byte("From: a\r\n\r\n"))
	f.Fuzz(func(t *testing.T, header []byte) {
		hdr, _, err := dkim.ParseHeader(header)
		if err != nil {
			return
		}
		sets, high, err := ParseSets(hdr)
		if err != nil {
			return
		}
		if len(sets) != high || high > MaxSets {
			t.Fatalf("%d sets, highest %d", len(sets), high)
		}
		for i, s := range sets {
			if s.Instance != i+1 || !s.AAR.Is(aarName) || !s.AMS.Is(amsName) || !s.AS.Is(sealName) {
				t.Fatalf("set %d: %+v", i, s)
			}
			if _, err := aarInstance(s.AAR.Value()); err != nil {
				t.Fatal(err)
			}
		}
		_ = sortedARC(sets)
	})
}
