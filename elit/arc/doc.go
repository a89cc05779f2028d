// Package arc verifies and seals Authenticated Received Chains (RFC
// 8617): the ARC sets a forwarder adds so that the next hop can see what
// the message's authentication gave before it was forwarded.
//
// Verify (Verifier) returns the chain validation status of a message
// (RFC 8617 §5.2): none, pass or fail, with the reason. Seal (Sealer)
// adds our set, instance i = n+1 (§5.1): ARC-Authentication-Results with
// this hop's results, an ARC-Message-Signature (a DKIM signature, RFC
// 8617 §4.1.2) and an ARC-Seal over the whole chain (§4.1.3, §5.1.1), or
// over our set alone when the chain arrived broken (§5.1.2).
//
// Both are built on elit/dkim: tag lists, canonicalization, key records
// and the algorithms are DKIM's. Keys are found through a
// dkim.TXTResolver; the clock of the sealer is a field.
package arc
