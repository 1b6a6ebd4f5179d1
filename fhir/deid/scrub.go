package deid

import (
	"strconv"
	"time"
)

// scrubber replaces identifiers in free text with typed placeholders and shifts the dates written in it.
type scrubber struct {
	m     *matcher
	shift int
	// birth is the true birth date of a patient aged 90 or over: a date written in text within a year of it is
	// replaced by [DATE] rather than shifted, since with the shift kept it would reveal the age.
	birth *fhirDate
	// nowYear (from Options.Now) decides the century of two-digit years.
	nowYear int
	// uid maps a DICOM UID to its keyed replacement (nil: UIDs in text are left to the other detectors).
	uid  func(string) string
	out  []byte
	hits int
}

var monthNames = map[string]int{
	"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
	"september": 9, "october": 10, "november": 11, "december": 12,
	"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
	"nov": 11, "dec": 12,
}

var monthFull = [...]string{"", "January", "February", "March", "April", "May", "June", "July", "August",
	"September", "October", "November", "December"}

// idKeywords announce an identifier: the number after them is redacted from 4 digits on.
var idKeywords = map[string]bool{
	"mrn": true, "mr": true, "hcn": true, "phn": true, "sin": true, "ssn": true, "nas": true, "ramq": true,
	"ohip": true, "chart": true, "acct": true, "account": true, "id": true, "card": true, "no": true,
	"number": true, "nir": true, "insurance": true, "policy": true, "member": true, "licence": true, "license": true,
}

// weekdays are replaced in text: with the dates shifted, they would give the shift away modulo 7.
var weekdays = map[string]bool{
	"monday": true, "tuesday": true, "wednesday": true, "thursday": true, "friday": true, "saturday": true,
	"sunday": true, "lundi": true, "mardi": true, "mercredi": true, "jeudi": true, "vendredi": true, "samedi": true,
	"dimanche": true,
}

// nameAnnouncers are titles and kinship words after which a capitalized word is taken for a name, even when
// the record does not list it.
var nameAnnouncers = map[string]bool{
	"dr": true, "dre": true, "mr": true, "mrs": true, "ms": true, "mme": true, "mlle": true, "prof": true,
	"nurse": true, "inf": true, "son": true, "daughter": true, "mother": true, "father": true, "wife": true,
	"husband": true, "brother": true, "sister": true, "partner": true, "spouse": true, "grandmother": true,
	"grandfather": true, "aunt": true, "uncle": true, "cousin": true, "niece": true, "nephew": true,
	"friend": true, "fils": true, "fille": true, "mère": true, "père": true, "épouse": true, "époux": true,
	"frère": true, "sœur": true, "conjoint": true, "conjointe": true, "neighbour": true, "neighbor": true,
	"caregiver": true, "guardian": true, "tuteur": true, "tutrice": true,
}

// isCapitalized reports whether w starts with an upper-case letter (ASCII or Latin-1) and has at least two
// letters.
func isCapitalized(w []byte) bool {
	if len(w) < 2 {
		return false
	}
	if w[0] >= 'A' && w[0] <= 'Z' {
		return true
	}
	return len(w) >= 3 && w[0] == 0xC3 && w[1] >= 0x80 && w[1] <= 0x9E && w[1] != 0x97
}

func bytesLower(w []byte) []byte {
	out := make([]byte, len(w))
	for i, c := range w {
		out[i] = lower(c)
	}
	return out
}

// emailLocal are the bytes of the local part of an email address.
var emailLocal = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = isAlnum(b) || b == '.' || b == '_' || b == '%' || b == '+' || b == '-'
	}
	return t
}()

// Word classes of wordInfo.
const (
	wordMonth         = 0x0f // the month number, 1…12
	wordIDKeyword     = 0x10
	wordWeekday       = 0x20
	wordNameAnnouncer = 0x40
)

// wordInfo merges the word lists the scrubber consults, so each word costs one map lookup.
var wordInfo = func() map[string]uint8 {
	m := map[string]uint8{}
	for w, n := range monthNames {
		m[w] |= uint8(n)
	}
	for w := range idKeywords {
		m[w] |= wordIDKeyword
	}
	for w := range weekdays {
		m[w] |= wordWeekday
	}
	for w := range nameAnnouncers {
		m[w] |= wordNameAnnouncer
	}
	return m
}()

// canadianFirstSet is canadianFirst as a table.
var canadianFirstSet = func() (t [256]bool) {
	for i := 0; i < len(canadianFirst); i++ {
		t[canadianFirst[i]] = true
	}
	return t
}()

// canadianFirst are the letters a Canadian postal code can start with.
const canadianFirst = "ABCEGHJKLMNPRSTVXYabceghjklmnprstvxy"

// scrub returns s with every known identifier and every detected pattern replaced. When nothing changes it
// returns s itself and false.
func (sc *scrubber) scrub(s []byte) ([]byte, bool) {
	out := sc.out[:0]
	changed := false
	last := 0 // s[last:i] not yet copied
	idUntil := -1
	nameUntil := -1
	emit := func(i, end int, rep string) {
		out = append(out, s[last:i]...)
		out = append(out, rep...)
		last = end
		changed = true
		sc.hits++
	}
	for i := 0; i < len(s); {
		c := s[i]
		if i > 0 && isAlnum(s[i-1]) || !(isAlnum(c) || c == '+' || c == '(') {
			i++
			continue
		}
		if end := emailAt(s, i); end > 0 {
			emit(i, end, "[EMAIL]")
			i = end
			continue
		}
		if isAlnum(c) {
			if end, k := sc.m.matchAt(s, i); end > 0 {
				rep := k.placeholder()
				if k == phiUID && sc.uid != nil {
					rep = sc.uid(string(s[i:end])) // the same keyed UID as in ImagingStudy
				}
				emit(i, end, rep)
				i = end
				continue
			}
		}
		if isLetter(c) {
			if lc := lower(c); lc == 'h' || lc == 'f' || lc == 'w' {
				if end := urlAt(s, i); end > 0 {
					emit(i, end, "[URL]")
					i = end
					continue
				}
			}
			if end, rep := sc.monthDateAt(s, i); end > 0 {
				emit(i, end, rep)
				i = end
				continue
			}
			if end := postalAt(s, i); end > 0 {
				emit(i, end, "[ADDRESS]")
				i = end
				continue
			}
			if end := ramqAt(s, i); end > 0 {
				emit(i, end, "[ID]")
				i = end
				continue
			}
		}
		if isDigit(c) {
			if end := ipAt(s, i); end > 0 {
				emit(i, end, "[IP]")
				i = end
				continue
			}
			if end, standard := uidAt(s, i); end > 0 {
				switch {
				case standard:
					// A standard DICOM UID (SOP class, transfer syntax) identifies no one.
				case sc.uid != nil:
					// A DICOM UID written in text gets the same keyed replacement as in ImagingStudy.
					emit(i, end, sc.uid(string(s[i:end])))
				default:
					emit(i, end, "[ID]")
				}
				i = end
				continue
			}
			if end, rep := sc.numericDateAt(s, i); end > 0 {
				emit(i, end, rep)
				i = end
				continue
			}
		}
		if sc.birth != nil && isDigit(c) && i+4 <= len(s) && (i+4 == len(s) || !isAlnum(s[i+4])) {
			if v, ok := digits(s[i : i+4]); ok && v >= sc.birth.y-1 && v <= sc.birth.y+1 {
				emit(i, i+4, "[DATE]") // the birth year of a patient aged 90 or over
				i += 4
				continue
			}
		}
		if isDigit(c) || c == '+' || c == '(' {
			if end, rep := numberRunAt(s, i, i <= idUntil); end > 0 {
				if rep != "" {
					emit(i, end, rep)
				}
				i = end
				continue
			}
		}
		// An alphanumeric word: an MRN-like token, or a keyword announcing an identifier.
		j := i
		digitsN, letters := 0, 0
		for j < len(s) && (isAlnum(s[j]) || s[j] == '-' && j+1 < len(s) && isAlnum(s[j+1])) {
			switch {
			case isDigit(s[j]):
				digitsN++
			case s[j] != '-':
				letters++
			}
			j++
		}
		if digitsN >= 6 || digitsN >= 4 && i <= idUntil || digitsN >= 5 && letters > 0 && letters <= 3 {
			emit(i, j, "[ID]")
			i = j
			continue
		}
		if i <= nameUntil && digitsN == 0 && isCapitalized(s[i:j]) && !nameStopwords[string(bytesLower(s[i:j]))] {
			emit(i, j, "[NAME]")
			nameUntil = j + 1 // "Luc Gagnon": a second capitalized word right after
			i = j
			continue
		}
		if digitsN == 0 && j-i <= 12 {
			var w [12]byte
			for k := i; k < j; k++ {
				w[k-i] = lower(s[k])
			}
			info := wordInfo[string(w[:j-i])]
			if info&wordWeekday != 0 {
				// A weekday next to a shifted date would reveal the shift modulo 7.
				emit(i, j, "[DAY]")
				i = j
				continue
			}
			if info&wordIDKeyword != 0 {
				idUntil = j + 4
			}
			if info&wordNameAnnouncer != 0 {
				// "Dr. Lavoie", "her son Luc", "Mme Gagnon": the capitalized word that follows is a name.
				k := j
				if k < len(s) && s[k] == '.' {
					k++
				}
				if k < len(s) && s[k] == ' ' {
					nameUntil = k + 1
				}
			}
		}
		if j == i {
			j++
		}
		i = j
	}
	if !changed {
		return s, false
	}
	out = append(out, s[last:]...)
	sc.out = out
	return out, true
}

// emailAt matches local@domain.tld at i.
func emailAt(s []byte, i int) int {
	j := i
	for j < len(s) && j-i < 64 && emailLocal[s[j]] {
		j++
	}
	if j == i || j >= len(s) || s[j] != '@' {
		return 0
	}
	j++
	start, dot := j, false
	for j < len(s) && (isAlnum(s[j]) || s[j] == '-' || s[j] == '.' && j+1 < len(s) && isAlnum(s[j+1])) {
		if s[j] == '.' {
			dot = true
		}
		j++
	}
	if j == start || !dot {
		return 0
	}
	return j
}

func hasPrefixFold(s []byte, p string) bool {
	if len(s) < len(p) {
		return false
	}
	for k := 0; k < len(p); k++ {
		if lower(s[k]) != p[k] {
			return false
		}
	}
	return true
}

// urlAt matches http(s)://, ftp:// and www. addresses at i.
func urlAt(s []byte, i int) int {
	rest := s[i:]
	if !(hasPrefixFold(rest, "http://") || hasPrefixFold(rest, "https://") || hasPrefixFold(rest, "ftp://") || hasPrefixFold(rest, "www.")) {
		return 0
	}
	j := i
	for j < len(s) {
		switch s[j] {
		case ' ', '\t', '\n', '\r', '"', '\'', '<', '>', ')', ']':
			return j
		}
		j++
	}
	return j
}

// postalAt matches a Canadian postal code (A1A 1A1, A1A1A1, A1A-1A1) at i.
func postalAt(s []byte, i int) int {
	if len(s)-i < 6 {
		return 0
	}
	if !isDigit(s[i+1]) || !canadianFirstSet[s[i]] || !isLetter(s[i+2]) {
		return 0
	}
	j := i + 3
	if j < len(s) && (s[j] == ' ' || s[j] == '-') {
		j++
	}
	if len(s)-j < 3 || !isDigit(s[j]) || !isLetter(s[j+1]) || !isDigit(s[j+2]) {
		return 0
	}
	j += 3
	if j < len(s) && isAlnum(s[j]) {
		return 0
	}
	return j
}

func contains(set string, c byte) bool {
	for k := 0; k < len(set); k++ {
		if set[k] == c {
			return true
		}
	}
	return false
}

// ramqAt matches a Quebec health insurance number: 4 letters and 8 digits, optionally spaced (ABCD 1234 5678).
func ramqAt(s []byte, i int) int {
	if len(s)-i < 12 || !(s[i+4] == ' ' || s[i+4] == '-' || isDigit(s[i+4])) {
		return 0
	}
	for k := i; k < i+4; k++ {
		if !isLetter(s[k]) {
			return 0
		}
	}
	j := i + 4
	n := 0
	for j < len(s) && n < 8 {
		switch {
		case isDigit(s[j]):
			n++
			j++
		case s[j] == ' ' || s[j] == '-':
			if j+1 < len(s) && isDigit(s[j+1]) && (n == 0 || n == 4) {
				j++
				continue
			}
			return 0
		default:
			return 0
		}
	}
	if n != 8 || j < len(s) && isAlnum(s[j]) {
		return 0
	}
	return j
}

// uidAt matches a DICOM UID (dotted decimal, at least five components or 12 characters, at least four) at i.
// Standard DICOM UIDs (1.2.840.10008.…: SOP classes, transfer syntaxes) identify no one and are left alone.
func uidAt(s []byte, i int) (end int, standard bool) {
	j, comps := i, 0
	for j < len(s) {
		start := j
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j == start || j-start > 1 && s[start] == '0' {
			return 0, false
		}
		comps++
		if j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]) {
			j++
			continue
		}
		break
	}
	if j < len(s) && (isAlnum(s[j]) || s[j] == '.' && j+1 < len(s) && isAlnum(s[j+1])) {
		return 0, false
	}
	if comps < 4 || comps < 5 && j-i < 12 || j-i > 64 {
		return 0, false
	}
	return j, hasPrefixFold(s[i:j], "1.2.840.10008.")
}

// ipAt matches a dotted IPv4 address at i.
func ipAt(s []byte, i int) int {
	j := i
	for g := range 4 {
		start := j
		v := 0
		for j < len(s) && isDigit(s[j]) && j-start < 3 {
			v = v*10 + int(s[j]-'0')
			j++
		}
		if j == start || v > 255 {
			return 0
		}
		if g < 3 {
			if j >= len(s) || s[j] != '.' {
				return 0
			}
			j++
		}
	}
	if j < len(s) && (isAlnum(s[j]) || s[j] == '.' && j+1 < len(s) && isDigit(s[j+1])) {
		return 0
	}
	return j
}

// numberRunAt reads digit groups joined by single separators (phone numbers, health card numbers, SIN, SSN)
// at i. It returns the end and a placeholder, or the end and "" when the run is kept (a measurement, a small
// number), or 0 when the run is followed by letters (an alphanumeric token handled elsewhere).
func numberRunAt(s []byte, i int, announced bool) (int, string) {
	j := i
	if s[j] == '+' {
		j++
	}
	nDigits, groups := 0, 0
	var sizes [8]int
	var seps []byte
	var sepBuf [8]byte
	seps = sepBuf[:0]
	for j < len(s) {
		paren := false
		if s[j] == '(' {
			j++
			paren = true
		}
		start := j
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j == start {
			return 0, ""
		}
		if groups < len(sizes) {
			sizes[groups] = j - start
		}
		groups++
		nDigits += j - start
		if paren && j < len(s) && s[j] == ')' {
			j++
		}
		if j+1 < len(s) && (s[j] == ' ' || s[j] == '-' || s[j] == '.' || s[j] == '/') && (isDigit(s[j+1]) || s[j+1] == '(') {
			if len(seps) < cap(seps) {
				seps = append(seps, s[j])
			}
			j++
			continue
		}
		break
	}
	if j < len(s) && isLetter(s[j]) {
		return 0, ""
	}
	if s[i] == '+' && nDigits < 7 {
		return 0, ""
	}
	// A decimal or a ratio like 120/80 or 13.5 is a measurement.
	if groups == 2 && (seps[0] == '.' || seps[0] == '/') && nDigits < 9 {
		return j, ""
	}
	if nDigits >= 7 {
		// Ontario health card: 10 digits and an optional two-letter version code.
		if nDigits == 10 && j+2 < len(s) && (s[j] == ' ' || s[j] == '-') && isLetter(s[j+1]) && isLetter(s[j+2]) &&
			(j+3 == len(s) || !isAlnum(s[j+3])) && s[j+1] >= 'A' && s[j+1] <= 'Z' {
			return j + 3, "[ID]"
		}
		if phoneShaped(nDigits, groups, sizes[:min(groups, len(sizes))], s[i]) {
			return j, "[PHONE]"
		}
		return j, "[ID]"
	}
	if announced && nDigits >= 4 {
		return j, "[ID]"
	}
	if groups == 1 && nDigits <= 3 {
		v, _ := digits(s[i:j])
		if v >= 90 && ageContext(s, i, j) {
			return j, "90+"
		}
	}
	return j, ""
}

// phoneShaped reports whether n digits in groups of sizes read as a phone number. A bare run of ten digits does
// not: it is as likely an identifier (a health card number), and is redacted as [ID].
func phoneShaped(n, groups int, sizes []int, first byte) bool {
	if first == '+' || first == '(' {
		return true
	}
	switch n {
	case 7:
		return groups == 2 && sizes[0] == 3
	case 10:
		return groups == 3 && sizes[0] == 3 && sizes[1] == 3 && sizes[2] == 4
	case 11:
		return groups == 4 && sizes[0] == 1
	}
	return false
}

// ageContext reports whether the number s[i:j] is an age: "93 year-old", "93 yo", "age 93", "aged 93".
func ageContext(s []byte, i, j int) bool {
	after := s[j:]
	for len(after) > 0 && (after[0] == ' ' || after[0] == '-') {
		after = after[1:]
	}
	if hasPrefixFold(after, "year") || hasPrefixFold(after, "yr") || hasPrefixFold(after, "yo") ||
		hasPrefixFold(after, "y/o") || hasPrefixFold(after, "y.o") || hasPrefixFold(after, "ans") {
		return true
	}
	before := s[:i]
	for len(before) > 0 && (before[len(before)-1] == ' ' || before[len(before)-1] == ':') {
		before = before[:len(before)-1]
	}
	return hasSuffixFold(before, "age") || hasSuffixFold(before, "aged") || hasSuffixFold(before, "âge")
}

func hasSuffixFold(s []byte, p string) bool {
	if len(s) < len(p) {
		return false
	}
	return hasPrefixFold(s[len(s)-len(p):], p) && (len(s) == len(p) || !isAlnum(s[len(s)-len(p)-1]))
}

// numericDateAt shifts a date written with digits at i: ISO (2010-04-27, with an optional time, and 2010-04),
// 2010/04/27, 04/27/2010 and 27/04/2010 (read as month first unless the first number exceeds 12),
// and "27 April 2010".
func (sc *scrubber) numericDateAt(s []byte, i int) (int, string) {
	n := len(s) - i
	// ISO forms.
	if n >= 7 && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) && (s[i+4] == '-' || s[i+4] == '/') && isDigit(s[i+5]) && isDigit(s[i+6]) {
		sep := s[i+4]
		if n >= 10 && s[i+7] == sep && isDigit(s[i+8]) && isDigit(s[i+9]) && (n == 10 || !isDigit(s[i+10])) {
			buf := make([]byte, 0, 32)
			buf = append(buf, s[i:i+10]...)
			buf[4], buf[7] = '-', '-'
			end := i + 10
			if sep == '-' && end < len(s) && s[end] == 'T' {
				k := end + 1
				for k < len(s) && k-end < 30 && (isDigit(s[k]) || s[k] == ':' || s[k] == '.' || s[k] == '+' || s[k] == '-' || s[k] == 'Z') {
					k++
				}
				for ; k > end; k-- {
					if validTimeTail(s[end:k]) {
						buf = append(buf, s[end:k]...)
						end = k
						break
					}
				}
			}
			fd, ok := parseFHIRDate(buf)
			if !ok || sc.nearBirth(fd.y, fd.m, fd.d) {
				return end, "[DATE]"
			}
			out := appendShifted(nil, fd, sc.shift)
			if sep == '/' {
				out[4], out[7] = '/', '/'
			}
			return end, string(out)
		}
		if sep == '-' && (n == 7 || !isAlnum(s[i+7]) && s[i+7] != '-') {
			fd, ok := parseFHIRDate(s[i : i+7])
			if !ok {
				return 0, ""
			}
			return i + 7, string(appendShifted(nil, fd, sc.shift))
		}
	}
	// a/b/yyyy, a-b-yyyy, a.b.yyyy
	j := i
	a, ok := readNum(s, &j, 2)
	if ok && j < len(s) && (s[j] == '/' || s[j] == '-' || s[j] == '.') {
		sep := s[j]
		j++
		b, ok2 := readNum(s, &j, 2)
		if ok2 && j < len(s) && s[j] == sep {
			j++
			start := j
			y, ok3 := readNum(s, &j, 4)
			twoDigit := ok3 && j-start == 2 && (j == len(s) || !isAlnum(s[j]) && s[j] != sep)
			if twoDigit {
				y = sc.expandYear(y)
			}
			if ok3 && (j-start == 4 || twoDigit) && (j == len(s) || !isAlnum(s[j])) {
				m, d := a, b
				if a > 12 {
					m, d = b, a
				}
				if y < 1 || m < 1 || m > 12 || d < 1 || d > daysIn(y, m) || sc.nearBirth(y, m, d) {
					return j, "[DATE]"
				}
				yy, mm, dd := shiftYMD(y, m, d, sc.shift)
				var out []byte
				if a > 12 {
					out = appendInt(out, dd, 2)
					out = append(out, sep)
					out = appendInt(out, mm, 2)
				} else {
					out = appendInt(out, mm, 2)
					out = append(out, sep)
					out = appendInt(out, dd, 2)
				}
				out = append(out, sep)
				if twoDigit {
					out = appendInt(out, yy%100, 2)
				} else {
					out = appendInt(out, yy, 4)
				}
				return j, string(out)
			}
		}
	}
	// 27-Apr-2010, 27-APR-10
	j = i
	if d, ok := readNum(s, &j, 2); ok && j+1 < len(s) && s[j] == '-' && isLetter(s[j+1]) {
		if m, end := monthWordAt(s, j+1); m > 0 && end < len(s) && s[end] == '-' {
			k := end + 1
			start := k
			y, ok := readNum(s, &k, 4)
			if ok && (k-start == 4 || k-start == 2) && (k == len(s) || !isAlnum(s[k])) {
				if k-start == 2 {
					y = sc.expandYear(y)
				}
				if y < 1 || d < 1 || d > daysIn(y, m) || sc.nearBirth(y, m, d) {
					return k, "[DATE]"
				}
				yy, mm, dd := shiftYMD(y, m, d, sc.shift)
				out := appendInt(nil, dd, 2)
				out = append(out, '-')
				out = append(out, monthFull[mm][:3]...)
				out = append(out, '-')
				if k-start == 2 {
					out = appendInt(out, yy%100, 2)
				} else {
					out = appendInt(out, yy, 4)
				}
				return k, string(out)
			}
		}
	}
	// 27 April 2010
	j = i
	d, ok := readNum(s, &j, 2)
	if ok && j < len(s) && s[j] == ' ' {
		j++
		if m, end := monthWordAt(s, j); m > 0 && end < len(s) && s[end] == ' ' {
			k := end + 1
			start := k
			y, ok := readNum(s, &k, 4)
			if ok && k-start == 4 && (k == len(s) || !isAlnum(s[k])) && y >= 1 && d >= 1 && d <= daysIn(y, m) {
				if sc.nearBirth(y, m, d) {
					return k, "[DATE]"
				}
				yy, mm, dd := shiftYMD(y, m, d, sc.shift)
				return k, strconv.Itoa(dd) + " " + monthFull[mm] + " " + strconv.Itoa(yy)
			}
		}
	}
	return 0, ""
}

// expandYear reads a two-digit year as 19yy or 20yy, whichever is not in the future.
func (sc *scrubber) expandYear(y int) int {
	now := sc.nowYear
	if now == 0 {
		now = 2000
	}
	if 2000+y <= now+1 {
		return 2000 + y
	}
	return 1900 + y
}

// monthDateAt shifts "April 27, 2010", "Apr 27 2010" and "April 2010" at i.
func (sc *scrubber) monthDateAt(s []byte, i int) (int, string) {
	m, end := monthWordAt(s, i)
	if m == 0 || end >= len(s) || s[end] != ' ' {
		return 0, ""
	}
	j := end + 1
	start := j
	v, ok := readNum(s, &j, 4)
	if !ok {
		return 0, ""
	}
	if j-start == 4 && (j == len(s) || !isAlnum(s[j])) {
		if sc.nearBirth(v, m, 15) {
			return j, "[DATE]"
		}
		yy, mm, _ := shiftYMD(v, m, 15, sc.shift)
		return j, monthFull[mm] + " " + strconv.Itoa(yy)
	}
	if j-start > 2 {
		return 0, ""
	}
	k := j
	if k < len(s) && s[k] == ',' {
		k++
	}
	if k < len(s) && s[k] == ' ' {
		k++
	}
	ys := k
	y, ok := readNum(s, &k, 4)
	if !ok || k-ys != 4 || k < len(s) && isAlnum(s[k]) || y < 1 || v < 1 || v > daysIn(y, m) {
		return 0, ""
	}
	if sc.nearBirth(y, m, v) {
		return k, "[DATE]"
	}
	yy, mm, dd := shiftYMD(y, m, v, sc.shift)
	return k, monthFull[mm] + " " + strconv.Itoa(dd) + ", " + strconv.Itoa(yy)
}

// nearBirth reports whether y-m-d lies within 366 days of the withheld birth date.
func (sc *scrubber) nearBirth(y, m, d int) bool {
	if sc.birth == nil {
		return false
	}
	b := time.Date(sc.birth.y, time.Month(max(sc.birth.m, 1)), max(sc.birth.d, 1), 0, 0, 0, 0, time.UTC)
	t := time.Date(y, time.Month(max(m, 1)), max(d, 1), 0, 0, 0, 0, time.UTC)
	diff := t.Sub(b)
	return diff < 367*24*time.Hour && diff > -367*24*time.Hour
}

// monthWordAt recognizes an English month name or abbreviation (with an optional dot) at i.
func monthWordAt(s []byte, i int) (int, int) {
	if i >= len(s) {
		return 0, 0
	}
	switch lower(s[i]) {
	case 'j', 'f', 'm', 'a', 's', 'o', 'n', 'd':
	default:
		return 0, 0
	}
	j := i
	for j < len(s) && isLetter(s[j]) && j-i < 9 {
		j++
	}
	if j == i || j < len(s) && isAlnum(s[j]) {
		return 0, 0
	}
	var w [9]byte
	for k := i; k < j; k++ {
		w[k-i] = lower(s[k])
	}
	m := int(wordInfo[string(w[:j-i])] & wordMonth)
	if m == 0 {
		return 0, 0
	}
	if j < len(s) && s[j] == '.' {
		j++
	}
	return m, j
}

func readNum(s []byte, j *int, maxLen int) (int, bool) {
	start := *j
	v := 0
	for *j < len(s) && isDigit(s[*j]) && *j-start < maxLen {
		v = v*10 + int(s[*j]-'0')
		*j++
	}
	if *j == start || *j < len(s) && isDigit(s[*j]) {
		return 0, false
	}
	return v, true
}
