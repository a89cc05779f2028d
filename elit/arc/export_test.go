package arc

// Standardize makes s write the ValiMail suite's standard form of the
// fields (tags sorted, lowercase, no folding), which the suite's expected
// signatures were made over. For tests only.
func (s *Sealer) Standardize() { s.standardize = true }
