// Package oneffs reads and writes OneFFS images: one file on a raw block
// device, byte-compatible with robur-coop's OCaml oneffs (see
// shared/docs/oneffs-format.md for the byte-level specification).
//
// Two on-disk formats are supported, and Open detects which one a device holds:
//
//   - Classic OneFFS (the default, and what the original `oneffs` CLI writes): an
//     18-byte header with two CRC-32s in sector 0, the file in sectors 1..n.
//   - OneFFS-Fail-safe (opt-in with WithFormat(FailSafe)): two SHA-256-protected
//     superblocks, in the first and the last sector, and the file in a chain of
//     sectors written copy-on-write. The original's fail-safe library reads what
//     this package writes.
//
// # Crash guarantees
//
// Every step of a change is made durable (Device.Sync) before the next one
// starts, and a write that cannot fit is refused before the device is touched.
// Assuming the device writes a single sector atomically and Sync is honest:
//
//   - Classic Write: a power cut leaves the old file, no file ("unset"), or the
//     new file. Never a header over the wrong data, never a partial file: the
//     header is invalidated (and synced) before the data is written, and the
//     new header is written only after the data is synced.
//   - Fail-safe Write: a power cut leaves the old file or the new file, never
//     neither. New data goes to sectors the old file does not use; the
//     superblock that is not the current one is replaced first. A torn
//     (partially written) superblock sector is detected by its hash, so the
//     fail-safe format survives even non-atomic sector writes.
//   - Delete: the file is first made unreachable (header or superblocks), then
//     its data sectors are zeroed. A power cut leaves the old file or none,
//     possibly with some old data bytes still on the device.
//   - Format only rewrites metadata (sector 0, and for fail-safe the last
//     sector): the result is an empty image.
//
// Unlike the original, nothing is cached between calls: every Read, Stat and
// Size reads the device, so a Delete (or a change made by another program) is
// seen at once. A corrupt header is reported as a *HeaderError from Read and
// Stat, and Write, Format and Delete still work on such a device.
//
// The package does no logging and has no global state. An Image is safe for
// concurrent use by several goroutines of one process; nothing locks the
// device against other processes, except that Open refuses a block device
// that is mounted or opened exclusively by someone else (O_EXCL on Linux).
package oneffs
