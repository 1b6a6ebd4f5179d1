package deid

import (
	"strconv"
	"time"
)

// Date precision of a FHIR date, dateTime or instant.
const (
	precYear = iota + 1
	precMonth
	precDay
)

// fhirDate is a parsed FHIR date/dateTime/instant: the calendar part and the untouched time-of-day suffix
// ("T02:24:38-07:00"), which the shift copies verbatim.
type fhirDate struct {
	y, m, d int
	prec    int
	tail    []byte
}

func digits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseFHIRDate parses YYYY, YYYY-MM, YYYY-MM-DD and YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm].
func parseFHIRDate(s []byte) (fhirDate, bool) {
	var fd fhirDate
	if len(s) < 4 {
		return fd, false
	}
	y, ok := digits(s[:4])
	if !ok || y < 1 {
		return fd, false
	}
	fd.y, fd.prec = y, precYear
	if len(s) == 4 {
		return fd, true
	}
	if len(s) < 7 || s[4] != '-' {
		return fd, false
	}
	m, ok := digits(s[5:7])
	if !ok || m < 1 || m > 12 {
		return fd, false
	}
	fd.m, fd.prec = m, precMonth
	if len(s) == 7 {
		return fd, true
	}
	if len(s) < 10 || s[7] != '-' {
		return fd, false
	}
	d, ok := digits(s[8:10])
	if !ok || d < 1 || d > daysIn(y, m) {
		return fd, false
	}
	fd.d, fd.prec = d, precDay
	if len(s) == 10 {
		return fd, true
	}
	if !validTimeTail(s[10:]) {
		return fd, false
	}
	fd.tail = s[10:]
	return fd, true
}

// validTimeTail checks "Thh:mm[:ss[.f+]][Z|±hh:mm]".
func validTimeTail(t []byte) bool {
	if len(t) < 6 || t[0] != 'T' || t[3] != ':' {
		return false
	}
	if h, ok := digits(t[1:3]); !ok || h > 24 {
		return false
	}
	if mi, ok := digits(t[4:6]); !ok || mi > 59 {
		return false
	}
	t = t[6:]
	if len(t) >= 3 && t[0] == ':' {
		if sec, ok := digits(t[1:3]); !ok || sec > 60 {
			return false
		}
		t = t[3:]
		if len(t) > 0 && t[0] == '.' {
			i := 1
			for i < len(t) && t[i] >= '0' && t[i] <= '9' {
				i++
			}
			if i == 1 || i > 10 {
				return false
			}
			t = t[i:]
		}
	}
	switch {
	case len(t) == 0:
		return true
	case len(t) == 1 && t[0] == 'Z':
		return true
	case len(t) == 6 && (t[0] == '+' || t[0] == '-') && t[3] == ':':
		_, ok1 := digits(t[1:3])
		_, ok2 := digits(t[4:6])
		return ok1 && ok2
	}
	return false
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// shiftYMD moves a calendar date by days.
func shiftYMD(y, m, d, days int) (int, int, int) {
	t := time.Date(y, time.Month(m), d+days, 0, 0, 0, 0, time.UTC)
	return t.Year(), int(t.Month()), t.Day()
}

// appendShifted appends fd moved by days, keeping its precision. A full date moves exactly (times of day and
// offsets are copied, so every interval between two full dates or instants is preserved to the second). A
// YYYY-MM value moves its 15th and keeps the resulting month; a YYYY value moves its 2 July and keeps the year,
// so partial dates land within the precision they claim.
func appendShifted(dst []byte, fd fhirDate, days int) []byte {
	switch fd.prec {
	case precYear:
		y, _, _ := shiftYMD(fd.y, 7, 2, days)
		return appendInt(dst, y, 4)
	case precMonth:
		y, m, _ := shiftYMD(fd.y, fd.m, 15, days)
		dst = appendInt(dst, y, 4)
		dst = append(dst, '-')
		return appendInt(dst, m, 2)
	}
	y, m, d := shiftYMD(fd.y, fd.m, fd.d, days)
	dst = appendInt(dst, y, 4)
	dst = append(dst, '-')
	dst = appendInt(dst, m, 2)
	dst = append(dst, '-')
	dst = appendInt(dst, d, 2)
	return append(dst, fd.tail...)
}

func appendInt(dst []byte, v, width int) []byte {
	var buf [12]byte
	s := strconv.AppendInt(buf[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// ageAt returns the age in whole years on ref of someone born on the earliest day fd allows.
func ageAt(fd fhirDate, ref time.Time) int {
	m, d := fd.m, fd.d
	if m == 0 {
		m = 1
	}
	if d == 0 {
		d = 1
	}
	age := ref.Year() - fd.y
	if int(ref.Month()) < m || (int(ref.Month()) == m && ref.Day() < d) {
		age--
	}
	return age
}
