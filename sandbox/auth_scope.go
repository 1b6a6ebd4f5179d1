package sandbox

import (
	"slices"
	"strings"
)

// Scopes the authorization server understands besides the patient/ resource scopes.
const (
	scopeOpenID        = "openid"
	scopeFHIRUser      = "fhirUser"
	scopeOffline       = "offline_access"
	scopeLaunch        = "launch"
	scopeLaunchPatient = "launch/patient"
)

// contextScopes are the non-resource scopes a site grants as asked.
var contextScopes = []string{scopeOpenID, scopeFHIRUser, scopeOffline, scopeLaunch, scopeLaunchPatient, "profile"}

// resourceScope is one parsed patient/ resource scope. The sandbox is read-only, so only read and search matter.
type resourceScope struct {
	typ          string // a resource type or "*"
	read, search bool
}

// parseResourceScope parses a SMART patient/ scope in the site's dialect and returns the form the site grants
// (normalized to what a read-only server can give), or ok=false when the site does not grant it at all:
//   - v1 sites: patient/T.read and patient/T.* (granted as patient/T.read);
//   - v2 sites: patient/T.[c][r][u][d][s] (granted with only r and s kept), plus the v1 forms above;
//   - never: user/ and system/ scopes, write-only scopes, and v2 granular scopes with a query (?category=...),
//     which this sandbox does not implement and so leaves out of the granted scope.
func parseResourceScope(s string, version int) (granted string, rs resourceScope, ok bool) {
	rest, found := strings.CutPrefix(s, "patient/")
	if !found || strings.Contains(rest, "?") {
		return "", resourceScope{}, false
	}
	typ, perm, found := strings.Cut(rest, ".")
	if !found || (typ != "*" && !validType(typ)) {
		return "", resourceScope{}, false
	}
	switch perm {
	case "read", "*":
		return "patient/" + typ + ".read", resourceScope{typ: typ, read: true, search: true}, true
	}
	if version < 2 || perm == "" {
		return "", resourceScope{}, false
	}
	// v2: a subsequence of "cruds", each letter at most once, in that order.
	order := "cruds"
	pos := 0
	for i := 0; i < len(perm); i++ {
		j := strings.IndexByte(order[pos:], perm[i])
		if j < 0 {
			return "", resourceScope{}, false
		}
		pos += j + 1
	}
	rs = resourceScope{typ: typ, read: strings.Contains(perm, "r"), search: strings.Contains(perm, "s")}
	if !rs.read && !rs.search {
		return "", resourceScope{}, false
	}
	out := "patient/" + typ + "."
	if rs.read {
		out += "r"
	}
	if rs.search {
		out += "s"
	}
	return out, rs, true
}

// normalizeScopes keeps, in order and without duplicates, the scopes the site grants, each in its granted form.
func normalizeScopes(scopes []string, version int) []string {
	var out []string
	for _, s := range scopes {
		g := s
		if !slices.Contains(contextScopes, s) {
			n, _, ok := parseResourceScope(s, version)
			if !ok {
				continue
			}
			g = n
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// systemScopeGranted reports whether a backend client (client_credentials) gets the SMART system/ scope s, which
// is then granted exactly as asked:
//   - v2 sites: system/T.rs, system/T.r, system/T.s and the v1 form system/T.read, T a resource type or "*";
//   - v1 sites: system/T.read only;
//   - never: write scopes, v2 scopes with a query, and anything that is not a system/ scope.
func systemScopeGranted(s string, version int) bool {
	rest, found := strings.CutPrefix(s, "system/")
	if !found {
		return false
	}
	typ, perm, found := strings.Cut(rest, ".")
	if !found || (typ != "*" && !validType(typ)) {
		return false
	}
	switch perm {
	case "read":
		return true
	case "rs", "r", "s":
		return version >= 2
	}
	return false
}

// systemScopes keeps, in order and without duplicates, the requested scopes a backend client gets.
func systemScopes(requested []string, version int) []string {
	var out []string
	for _, s := range requested {
		if systemScopeGranted(s, version) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// scopeAllowed reports whether the site could grant s in some form.
func scopeAllowed(s string, version int) bool {
	if slices.Contains(contextScopes, s) {
		return true
	}
	_, _, ok := parseResourceScope(s, version)
	return ok
}

// scopeTypes lists the resource types named by the patient/ scopes, in order, "*" included.
func scopeTypes(scopes []string, version int) []string {
	var out []string
	for _, s := range scopes {
		if _, rs, ok := parseResourceScope(s, version); ok && !slices.Contains(out, rs.typ) {
			out = append(out, rs.typ)
		}
	}
	return out
}

// narrowScopes drops the resource scopes whose type is not in keep; context scopes stay.
func narrowScopes(scopes []string, keep []string, version int) []string {
	var out []string
	for _, s := range scopes {
		if _, rs, ok := parseResourceScope(s, version); ok && !slices.Contains(keep, rs.typ) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// permissions is what a token's scopes allow, by resource type ("*" for every type).
type permissions map[string]resourceScope

func permissionsOf(scopes []string, version int) permissions {
	p := permissions{}
	for _, s := range scopes {
		if _, rs, ok := parseResourceScope(s, version); ok {
			cur := p[rs.typ]
			cur.typ = rs.typ
			cur.read = cur.read || rs.read
			cur.search = cur.search || rs.search
			p[rs.typ] = cur
		}
	}
	return p
}

func (p permissions) canRead(typ string) bool {
	return p[typ].read || p["*"].read
}

func (p permissions) canSearch(typ string) bool {
	return p[typ].search || p["*"].search
}
