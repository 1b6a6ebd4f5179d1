// Package seal encrypts small secrets at rest (OAuth access and refresh tokens, consent material) with AES-256-GCM
// under a keyring of named keys, so that keys can rotate: new data is sealed under the current key while data sealed
// under an older key still opens for as long as that key stays in the ring.
//
// # Sealed format
//
// A sealed value is the concatenation
//
//	version (1 byte, 0x01) | kid length n (1 byte, 1..64) | kid (n bytes, ASCII [A-Za-z0-9._-]) |
//	nonce (12 bytes, random) | ciphertext || GCM tag (len(plaintext) + 16 bytes)
//
// The GCM additional data is the header (version, kid length and kid) followed by the caller's aad, so a sealed
// value cannot be moved to another record (a different aad) nor relabelled with another key id without failing to
// open. Nonces are random per seal; with 96-bit random nonces a key must not seal more than about 2^32 values, far
// beyond what a token store writes between rotations.
package seal
