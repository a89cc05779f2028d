// Package dkim signs and verifies DomainKeys Identified Mail signatures
// (RFC 6376) with rsa-sha256 and ed25519-sha256 (RFC 8463), under the
// rules of RFC 8301 (no rsa-sha1, RSA keys of 1024 bits at least).
//
// Signing (Signer, Sign) and verifying (Verifier, Verify) read a message
// once: the header section is kept, the body is canonicalized and hashed
// as it streams. Both use the same pieces, exported for elit/arc, whose
// ARC-Message-Signature is a DKIM signature under another name (RFC 8617
// §4.1.2) and whose ARC-Seal hashes header fields like one:
//
//   - ParseTagList: the tag=value syntax (RFC 6376 §3.2);
//   - ReadHeader, Field, Header: the header section as written;
//   - CanonHeader, NewBodyCanonicalizer, NewBodyHasher: simple and
//     relaxed canonicalization (§3.4) with the body length limit (l=);
//   - HeaderHash, StripB: the header hash (§3.7);
//   - ParseKey, LookupKey, Key.VerifyDigest, SignDigest: key records
//     (§3.6) and the algorithms (§3.3, RFC 8463 §3);
//   - Folder: folded tag lists.
//
// GenerateKey makes keys and their DNS records; ParsePrivateKey reads
// them back. Key lookups go through a TXTResolver (elit/dns.Resolver is
// one); nothing here touches the network otherwise, and the clock is a
// field of Signer and Verifier.
package dkim
