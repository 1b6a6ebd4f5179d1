// Package review is the second-opinion request: which sources hold the patient's records, who will read the
// packet, what to include, and where the request is in its life. A review moves
// awaiting-consent → consented → assembling → ready, or ends expired, withdrawn or failed; every move is checked
// against that graph here and made atomically by the store.
package review
