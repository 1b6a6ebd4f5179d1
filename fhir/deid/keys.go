package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math/big"
	"strconv"
)

// MinSecretBytes is the shortest key secret accepted.
const MinSecretBytes = 32

// Key is the pseudonymization key. Only ID ever appears in output (in the report); Secret never does.
type Key struct {
	ID     string
	Secret []byte
}

// keyer derives every keyed value of one Deidentify call: resource pseudonyms, the date shift and imaging UIDs.
// All derivations are HMAC-SHA256 under the secret with a purpose label and the scope, so two reviews (scopes)
// or two keys give unlinkable outputs.
type keyer struct {
	mac   hash.Hash
	scope string
	sum   [sha256.Size]byte
	ids   map[string]string
	uids  map[string]string
}

func newKeyer(k Key, scope string) *keyer {
	return &keyer{mac: hmac.New(sha256.New, k.Secret), scope: scope, ids: map[string]string{}, uids: map[string]string{}}
}

func (k *keyer) derive(purpose, value string) []byte {
	k.mac.Reset()
	k.mac.Write([]byte("secondlook/deid/v1\x00"))
	k.mac.Write([]byte(purpose))
	k.mac.Write([]byte{0})
	k.mac.Write([]byte(k.scope))
	k.mac.Write([]byte{0})
	k.mac.Write([]byte(value))
	return k.mac.Sum(k.sum[:0])
}

// pseudonym returns the UUID-shaped pseudonym (RFC 9562 version 8) for a resource identity "Type/id".
func (k *keyer) pseudonym(identity string) string {
	if p, ok := k.ids[identity]; ok {
		return p
	}
	s := k.derive("id", identity)
	var u [16]byte
	copy(u[:], s[:16])
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	p := string(buf[:])
	k.ids[identity] = p
	return p
}

// uid returns the keyed DICOM UID replacing uid: "2.25." followed by a 128-bit decimal (PS3.5 B.2), the same for
// the same input UID wherever it appears ("urn:oid:" prefixes are ignored so identifiers and series match).
func (k *keyer) uid(uid string) string {
	if len(uid) > 8 && uid[:8] == "urn:oid:" {
		uid = uid[8:]
	}
	if p, ok := k.uids[uid]; ok {
		return p
	}
	s := k.derive("uid", uid)
	v := new(big.Int).SetBytes(s[:16])
	p := "2.25." + v.String()
	k.uids[uid] = p
	return p
}

// dayShift returns the keyed day shift for attempt n: a non-zero number of days in [-365, 365].
func (k *keyer) dayShift(attempt int) int {
	s := k.derive("dateshift", strconv.Itoa(attempt))
	v := int(binary.BigEndian.Uint32(s[:4]) % 730)
	if v < 365 {
		return v - 365 // -365 … -1
	}
	return v - 364 // 1 … 365
}

// localID returns the replacement id of the n-th contained resource.
func localID(n int) string { return "c" + strconv.Itoa(n+1) }
