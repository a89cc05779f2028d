package dnsseclab

import (
	"slices"
	"testing"
)

// TestCanonicalOrder: the order of RFC 4034 §6.1's example (without its
// escaped labels), which the NSEC chain follows.
func TestCanonicalOrder(t *testing.T) {
	want := []string{"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", "*.z.example."}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, canonicalCompare)
	if !slices.Equal(got, want) {
		t.Errorf("canonical order %q, want %q", got, want)
	}
}
