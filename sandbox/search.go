package sandbox

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// offsetParam carries the paging position in next/previous links. The name is HAPI's.
const offsetParam = "_getpagesoffset"

// maxSearchParams bounds how many parameters one search may carry.
const maxSearchParams = 100

// kv is one query parameter in request order.
type kv struct{ key, value string }

type sortKey struct {
	param string // a date parameter name, or "_id"
	desc  bool
}

// searchQuery is a parsed, validated search: the predicates are ANDed, each one ORs its comma-separated values.
type searchQuery struct {
	preds       []func(*resource) bool
	patientHint string // a single patient every match must belong to, used to narrow the candidates
	count       int
	countGiven  bool
	offset      int
	sorts       []sortKey
	omitTotal   bool
	include     bool
	kept        []kv // parameters echoed in the Bundle links, in request order
}

// parseQueryString splits a raw query (or form body) into parameters, preserving order and repetitions.
func parseQueryString(raw string) ([]kv, error) {
	var out []kv
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid", "malformed query string")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid", "malformed query string")
		}
		out = append(out, kv{key, val})
		if len(out) > maxSearchParams {
			return nil, errorf(http.StatusBadRequest, "too-costly", "more than %d search parameters", maxSearchParams)
		}
	}
	return out, nil
}

// parseSearch validates the parameters of a search on typ. Unknown or unsupported parameters fail the search when
// strict (Prefer: handling=strict) and are dropped otherwise; malformed values of known parameters always fail.
func (s *Site) parseSearch(typ string, params []kv, strict bool) (*searchQuery, error) {
	q := &searchQuery{count: s.defaultPageSize}
	defs := searchParams(typ)
	unsupported := func(name string) error {
		if strict {
			return errorf(http.StatusBadRequest, "not-supported", "search parameter %q is not supported for %s", name, typ)
		}
		return nil
	}
	for _, p := range params {
		name, modifier, hasModifier := strings.Cut(p.key, ":")
		if p.value == "" {
			if err := unsupported(p.key); err != nil {
				return nil, err
			}
			continue
		}
		isResultParam := strings.HasPrefix(name, "_") && name != "_id"
		if isResultParam && hasModifier {
			if err := unsupported(p.key); err != nil {
				return nil, err
			}
			continue
		}
		switch name {
		case "_count", offsetParam:
			n, err := strconv.Atoi(p.value)
			if err != nil || n < 0 {
				return nil, errorf(http.StatusBadRequest, "invalid", "%s must be a non-negative integer", name)
			}
			if name == offsetParam {
				q.offset = n
				continue
			}
			q.count, q.countGiven = min(n, s.maxPageSize), true
		case "_sort":
			var keys []string
			for k := range strings.SplitSeq(p.value, ",") {
				desc := strings.HasPrefix(k, "-")
				param := strings.TrimPrefix(k, "-")
				if param == "date" && primaryDate(typ) != "" {
					param = primaryDate(typ)
				}
				if d, ok := findParam(defs, param); !ok || (d.kind != kindDate && d.kind != kindID) {
					if err := unsupported("_sort=" + k); err != nil {
						return nil, err
					}
					continue
				}
				q.sorts = append(q.sorts, sortKey{param: param, desc: desc})
				keys = append(keys, k)
			}
			if len(keys) > 0 {
				q.kept = append(q.kept, kv{"_sort", strings.Join(keys, ",")})
			}
		case "_total":
			switch p.value {
			case "none":
				q.omitTotal = true
			case "estimate", "accurate":
			default:
				return nil, errorf(http.StatusBadRequest, "invalid", "_total must be none, estimate or accurate")
			}
			q.kept = append(q.kept, p)
		case "_include":
			if typ != "DiagnosticReport" || s.disableInclude ||
				(p.value != "DiagnosticReport:result" && p.value != "DiagnosticReport:result:Observation") {
				if err := unsupported("_include=" + p.value); err != nil {
					return nil, err
				}
				continue
			}
			q.include = true
			q.kept = append(q.kept, p)
		case "_summary":
			switch p.value {
			case "count":
				q.count, q.countGiven = 0, true
			case "false":
			default:
				if err := unsupported("_summary=" + p.value); err != nil {
					return nil, err
				}
				continue
			}
			q.kept = append(q.kept, p)
		case "_format":
			if !strings.Contains(p.value, "json") {
				return nil, errorf(http.StatusNotAcceptable, "not-supported", "this server only produces JSON")
			}
			q.kept = append(q.kept, p)
		default:
			d, ok := findParam(defs, name)
			if !ok || !modifierSupported(d, modifier, hasModifier) {
				if err := unsupported(p.key); err != nil {
					return nil, err
				}
				continue
			}
			pred, hint, err := buildPredicate(d, modifier, p.value)
			if err != nil {
				return nil, err
			}
			q.preds = append(q.preds, pred)
			if hint != "" && q.patientHint == "" {
				q.patientHint = hint
			}
			q.kept = append(q.kept, p)
		}
	}
	return q, nil
}

func modifierSupported(d paramDef, modifier string, has bool) bool {
	if !has {
		return true
	}
	switch d.kind {
	case kindString:
		return modifier == "exact" || modifier == "contains"
	case kindReference:
		return validType(modifier) && (d.name != "patient" || modifier == "Patient")
	}
	return false
}

// buildPredicate compiles one parameter occurrence. hint is a patient id every match must belong to, if the
// parameter pins one.
func buildPredicate(d paramDef, modifier, value string) (pred func(*resource) bool, hint string, err error) {
	values := splitValues(value)
	if len(values) == 0 {
		return nil, "", errorf(http.StatusBadRequest, "invalid", "search parameter %q has no value", d.name)
	}
	switch d.kind {
	case kindID:
		return func(r *resource) bool { return slices.Contains(values, r.id) }, "", nil
	case kindToken:
		crits := make([]tokenCriterion, 0, len(values))
		for _, v := range values {
			crits = append(crits, parseToken(v))
		}
		return func(r *resource) bool {
			for _, c := range r.tokens[d.name] {
				for _, crit := range crits {
					if crit.matches(c) {
						return true
					}
				}
			}
			return false
		}, "", nil
	case kindString:
		for i, v := range values {
			values[i] = unescapeValue(v)
			if modifier != "exact" {
				values[i] = strings.ToLower(values[i])
			}
		}
		return func(r *resource) bool {
			for _, s := range r.strs[d.name] {
				for _, v := range values {
					switch modifier {
					case "exact":
						if s == v {
							return true
						}
					case "contains":
						if strings.Contains(strings.ToLower(s), v) {
							return true
						}
					default:
						if strings.HasPrefix(strings.ToLower(s), v) {
							return true
						}
					}
				}
			}
			return false
		}, "", nil
	case kindDate:
		crits := make([]dateCriterion, 0, len(values))
		for _, v := range values {
			c, err := parseDateCriterion(v)
			if err != nil {
				return nil, "", errorf(http.StatusBadRequest, "invalid", "search parameter %q has a malformed date", d.name)
			}
			crits = append(crits, c)
		}
		return func(r *resource) bool {
			for _, sp := range r.dates[d.name] {
				for _, c := range crits {
					if c.matches(sp) {
						return true
					}
				}
			}
			return false
		}, "", nil
	case kindReference:
		refs := make([]refCriterion, 0, len(values))
		for _, v := range values {
			c := parseRefCriterion(v)
			if modifier != "" {
				if c.typ != "" && c.typ != modifier {
					return nil, "", errorf(http.StatusBadRequest, "invalid", "search parameter %q: type modifier and value disagree", d.name)
				}
				c.typ = modifier
			}
			if d.name == "patient" && c.typ == "" {
				c.typ = "Patient"
			}
			refs = append(refs, c)
		}
		if len(refs) == 1 && refs[0].typ == "Patient" {
			hint = refs[0].id
		}
		if d.name == "patient" {
			return func(r *resource) bool {
				for _, c := range refs {
					if c.typ == "Patient" && r.patient != "" && c.id == r.patient {
						return true
					}
				}
				return false
			}, hint, nil
		}
		return func(r *resource) bool {
			for _, s := range r.subject {
				typ, id, _ := strings.Cut(s, "/")
				for _, c := range refs {
					if c.id == id && (c.typ == "" || c.typ == typ) {
						return true
					}
				}
			}
			return false
		}, hint, nil
	}
	return nil, "", errorf(http.StatusBadRequest, "not-supported", "search parameter %q is not supported", d.name)
}

// splitValues splits a parameter value on unescaped commas (FHIR's OR) and drops empty values.
func splitValues(v string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v) && strings.IndexByte(`,$|\`, v[i+1]) >= 0:
			cur.WriteString(v[i : i+2]) // keep the escape for the token splitter; unescaped below
			i++
		case v[i] == ',':
			if cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(v[i])
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func unescapeValue(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// tokenCriterion is one token value: code, system|code, |code (no system) or system| (any code).
type tokenCriterion struct {
	system, code string
	hasSystem    bool
}

func parseToken(v string) tokenCriterion {
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' {
			i++
			continue
		}
		if v[i] == '|' {
			return tokenCriterion{system: unescapeValue(v[:i]), code: unescapeValue(v[i+1:]), hasSystem: true}
		}
	}
	return tokenCriterion{code: unescapeValue(v)}
}

func (t tokenCriterion) matches(c coding) bool {
	switch {
	case !t.hasSystem:
		return c.code == t.code
	case t.system == "":
		return c.system == "" && c.code == t.code
	case t.code == "":
		return c.system == t.system
	default:
		return c.system == t.system && c.code == t.code
	}
}

// refCriterion is one reference value: id, Type/id, or an absolute URL ending in Type/id[/_history/v].
type refCriterion struct{ typ, id string }

func parseRefCriterion(v string) refCriterion {
	v = unescapeValue(v)
	segs := strings.Split(strings.TrimRight(v, "/"), "/")
	if n := len(segs); n >= 4 && segs[n-2] == "_history" {
		segs = segs[:n-2]
	}
	switch n := len(segs); n {
	case 1:
		return refCriterion{id: segs[0]}
	default:
		return refCriterion{typ: segs[n-2], id: segs[n-1]}
	}
}

// run executes the search: candidates (narrowed to one patient when possible), filter, sort.
func (q *searchQuery) run(ts *typeStore) []*resource {
	if ts == nil {
		return nil
	}
	candidates := ts.all
	if q.patientHint != "" {
		candidates = ts.byPatient[q.patientHint]
	}
	var out []*resource
next:
	for _, r := range candidates {
		for _, p := range q.preds {
			if !p(r) {
				continue next
			}
		}
		out = append(out, r)
	}
	if len(q.sorts) > 0 {
		slices.SortStableFunc(out, func(a, b *resource) int {
			for _, k := range q.sorts {
				if c := compareBy(k, a, b); c != 0 {
					return c
				}
			}
			return strings.Compare(a.id, b.id)
		})
	}
	return out
}

// compareBy orders by a sort key; resources without a value for a date key sort last in either direction.
func compareBy(k sortKey, a, b *resource) int {
	if k.param == "_id" {
		c := strings.Compare(a.id, b.id)
		if k.desc {
			c = -c
		}
		return c
	}
	da, db := a.dates[k.param], b.dates[k.param]
	switch {
	case len(da) == 0 && len(db) == 0:
		return 0
	case len(da) == 0:
		return 1
	case len(db) == 0:
		return -1
	}
	c := cmp.Compare(da[0].lo, db[0].lo)
	if k.desc {
		c = -c
	}
	return c
}
