package deid

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// phiKind is the kind of an identifying string. Its name is what errors and reports say instead of the value.
type phiKind uint8

const (
	phiNone phiKind = iota
	phiName
	phiID
	phiPhone
	phiEmail
	phiAddress
	phiURL
	phiLocation
	phiUID
	phiBirthDate
	phiIP
	phiDate
)

var phiKindNames = [...]string{"", "name", "identifier", "phone", "email", "address", "url", "location", "uid", "birth-date", "ip-address", "date"}
var phiPlaceholders = [...]string{"", "[NAME]", "[ID]", "[PHONE]", "[EMAIL]", "[ADDRESS]", "[URL]", "[LOCATION]", "[ID]", "[DATE]", "[IP]", "[DATE]"}

func (k phiKind) String() string { return phiKindNames[k] }

func (k phiKind) placeholder() string { return phiPlaceholders[k] }

// isAlnum reports whether c belongs to a word: ASCII letters and digits, and every byte of a non-ASCII rune
// (so names in any script stay whole words).
func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// isSep reports the separators the identifier matcher skips between alphanumerics ("999-12-3456" = "999123456").
func isSep(c byte) bool {
	switch c {
	case ' ', '-', '.', '/', '(', ')', ',', '\'', '@', '_', '+', ':', '#', '\t':
		return true
	}
	return false
}

// latin1Fold maps the second byte of a two-byte UTF-8 Latin-1 letter (lead byte 0xC3) to its unaccented
// lower-case ASCII letter, so "Émilie", "émilie" and "Emilie" match alike.
var latin1Fold = func() [64]byte {
	var t [64]byte
	src := "AAAAAAACEEEEIIIIDNOOOOO\x00OUUUUYTsaaaaaaaceeeeiiiidnooooo\x00ouuuuyty"
	for i := 0; i < 64 && i < len(src); i++ {
		c := src[i]
		if c != 0 {
			t[i] = lower(c)
		}
	}
	return t
}()

// fold returns the matcher symbol at s[j] and how many bytes it spans.
func fold(s []byte, j int) (byte, int) {
	c := s[j]
	if c < 0x80 {
		return lower(c), 1
	}
	if c == 0xC3 && j+1 < len(s) && s[j+1] >= 0x80 && s[j+1] < 0xC0 {
		if f := latin1Fold[s[j+1]-0x80]; f != 0 {
			return f, 2
		}
	}
	return c, 1
}

// normalize folds s to the matcher alphabet: lower-case alphanumerics, everything else removed.
func normalize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			c := byte(r) //nolint:gosec // G115: r < utf8.RuneSelf fits in a byte
			if isAlnum(c) {
				b.WriteByte(lower(c))
			}
		case r >= 0xC0 && r <= 0xFF && latin1Fold[r-0xC0] != 0:
			b.WriteByte(latin1Fold[r-0xC0])
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// trieNode is a node of the identifier trie, kept small (children as a sibling list) because inputs carry
// thousands of identifiers.
type trieNode struct {
	child int32 // first child
	sib   int32 // next sibling
	fail  int32
	dense int32 // 1 + row in matcher.rows when the node has many children, else 0
	c     byte
	term  phiKind // scrubber: a known identifier ends here
	resid phiKind // residual scan: a pattern ends here (or at a suffix, after link())
}

// matcher holds every identifying string collected from one input. The scrubber walks it as a trie anchored at
// word starts, skipping separators; the residual scan runs it as an Aho–Corasick automaton over the normalized
// output, independent of word boundaries, plus an exact word table for name parts.
type matcher struct {
	nodes []trieNode
	root  [256]int32
	rows  [][37]int32
	words map[string]phiKind // residual: lower-case name words
	// wordLens has bit n set for every name word of length n (< 64), a cheap filter before the map lookup.
	wordLens uint64
	birth    [][]byte // residual: the patient's true birth dates, verbatim
	count    int
}

func newMatcher() *matcher {
	return &matcher{nodes: make([]trieNode, 1, 1024), words: map[string]phiKind{}}
}

func (m *matcher) child(n int32, c byte) int32 {
	if n == 0 {
		return m.root[c]
	}
	if d := m.nodes[n].dense; d != 0 {
		if s := sym(c); s < 36 {
			return m.rows[d-1][s]
		}
	}
	for x := m.nodes[n].child; x != 0; x = m.nodes[x].sib {
		if m.nodes[x].c == c {
			return x
		}
	}
	return 0
}

func (m *matcher) newChild(n int32, c byte) int32 {
	m.nodes = append(m.nodes, trieNode{c: c})
	x := off32(int64(len(m.nodes) - 1))
	if n == 0 {
		m.root[c] = x
		return x
	}
	m.nodes[x].sib = m.nodes[n].child
	m.nodes[n].child = x
	return x
}

// add inserts the normalized form of a value. scrub says whether the scrubber replaces it; residual whether the
// residual scan rejects output containing it.
func (m *matcher) add(norm string, k phiKind, scrub, residual bool) {
	if norm == "" {
		return
	}
	if residual && len(norm) < 7 && countDigits(norm) == len(norm) {
		// A short number would be found by chance inside dates and measurements once separators are
		// removed: it is matched as a whole word instead.
		residual = false
		m.words[norm] = k
		m.wordLens |= 1 << len(norm)
	}
	n := int32(0)
	for i := 0; i < len(norm); i++ {
		c := norm[i]
		nx := m.child(n, c)
		if nx == 0 {
			nx = m.newChild(n, c)
		}
		n = nx
	}
	if scrub && (m.nodes[n].term == phiNone || k < m.nodes[n].term) {
		m.nodes[n].term = k
	}
	if residual && m.nodes[n].resid == phiNone {
		m.nodes[n].resid = k
		m.count++
	}
}

// sym maps the ASCII alphanumerics to 0…35 and everything else to 36.
func sym(c byte) int {
	switch {
	case c >= 'a' && c <= 'z':
		return int(c - 'a')
	case c >= '0' && c <= '9':
		return 26 + int(c-'0')
	}
	return 36
}

// isBirthDate reports whether s contains the true birth date verbatim.
func (m *matcher) isBirthDate(s []byte) bool {
	for _, b := range m.birth {
		if bytes.Contains(s, b) {
			return true
		}
	}
	return false
}

// addWord adds a name word to the residual word table.
func (m *matcher) addWord(w string) {
	m.words[w] = phiName
	m.wordLens |= 1 << min(len(w), 63)
}

// link computes Aho–Corasick failure links and propagates residual outputs along them; nodes with many
// children get a dense row for the hot lookups.
func (m *matcher) link() {
	for n := range m.nodes {
		k := 0
		for x := m.nodes[n].child; x != 0; x = m.nodes[x].sib {
			k++
		}
		if n != 0 && k > 3 {
			var row [37]int32
			for x := m.nodes[n].child; x != 0; x = m.nodes[x].sib {
				if s := sym(m.nodes[x].c); s < 36 {
					row[s] = x
				}
			}
			m.rows = append(m.rows, row)
			m.nodes[n].dense = off32(int64(len(m.rows)))
		}
	}
	queue := make([]int32, 0, len(m.nodes))
	for c := range 256 {
		if x := m.root[c]; x != 0 {
			queue = append(queue, x)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for ch := m.nodes[n].child; ch != 0; ch = m.nodes[ch].sib {
			c := m.nodes[ch].c
			f := m.nodes[n].fail
			for f != 0 && m.child(f, c) == 0 {
				f = m.nodes[f].fail
			}
			if g := m.child(f, c); g != ch {
				m.nodes[ch].fail = g
			}
			if m.nodes[ch].resid == phiNone {
				m.nodes[ch].resid = m.nodes[m.nodes[ch].fail].resid
			}
			queue = append(queue, ch)
		}
	}
}

// matchAt returns the end of the longest known identifier starting at word start i of s, or -1.
func (m *matcher) matchAt(s []byte, i int) (int, phiKind) {
	n := int32(0)
	best, kind := -1, phiNone
	for j := i; j < len(s); {
		c := s[j]
		if isAlnum(c) {
			f, size := fold(s, j)
			nx := m.child(n, f)
			if nx == 0 {
				break
			}
			n = nx
			j += size
			if t := m.nodes[n].term; t != phiNone && (j == len(s) || !isAlnum(s[j])) {
				best, kind = j, t
			}
			continue
		}
		if isSep(c) && n != 0 {
			j++
			continue
		}
		break
	}
	return best, kind
}

// residual returns the kind of the first collected identifier found in s, or phiNone.
func (m *matcher) residual(s []byte) phiKind {
	n := int32(0)
	var word [64]byte
	wl := 0
	long := false
	for i := 0; i <= len(s); i++ {
		var c byte
		if i < len(s) {
			c = s[i]
		}
		if i < len(s) && isAlnum(c) {
			lc, size := fold(s, i)
			i += size - 1
			for n != 0 && m.child(n, lc) == 0 {
				n = m.nodes[n].fail
			}
			n = m.child(n, lc)
			if k := m.nodes[n].resid; k != phiNone {
				return k
			}
			if wl < len(word) {
				word[wl] = lc
				wl++
			} else {
				long = true
			}
			continue
		}
		if wl > 0 {
			if !long && (wl >= 63 || m.wordLens&(1<<wl) != 0) {
				if k, ok := m.words[string(word[:wl])]; ok {
					return k
				}
			}
			wl, long = 0, false
		}
	}
	for _, b := range m.birth {
		if bytes.Contains(s, b) {
			return phiBirthDate
		}
	}
	return phiNone
}
