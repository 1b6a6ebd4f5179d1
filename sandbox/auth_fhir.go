package sandbox

import (
	"net/http"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
)

// smartConfiguration is the document at <FHIR base>/.well-known/smart-configuration (SMART App Launch 2.x).
type smartConfiguration struct {
	Issuer                                     string   `json:"issuer"`
	JWKSURI                                    string   `json:"jwks_uri"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	Capabilities                               []string `json:"capabilities"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// smartConfiguration serves the SMART discovery document; it needs no token.
func (a *authServer) smartConfiguration(r *http.Request) *response {
	iss := a.issuer(r)
	perm := "permission-v2"
	if a.version == 1 {
		perm = "permission-v1"
	}
	doc := smartConfiguration{
		Issuer:                            iss,
		JWKSURI:                           iss + "/jwks",
		AuthorizationEndpoint:             iss + "/authorize",
		TokenEndpoint:                     iss + "/token",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "private_key_jwt"},
		TokenEndpointAuthSigningAlgValuesSupported: []string{"RS384", "ES384"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token", "client_credentials"},
		ScopesSupported:                            a.scopesSupported(),
		ResponseTypesSupported:                     []string{"code"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		IntrospectionEndpoint:                      iss + "/introspect",
		RevocationEndpoint:                         iss + "/revoke",
		UserinfoEndpoint:                           iss + "/userinfo",
		Capabilities: []string{
			"launch-standalone", "launch-ehr",
			"client-confidential-symmetric", "client-confidential-asymmetric",
			"context-standalone-patient", "context-ehr-patient",
			"permission-offline", "permission-patient", perm,
			"sso-openid-connect",
		},
		AuthorizationResponseISSParameterSupported: true,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return errorResponse(err)
	}
	return &response{status: http.StatusOK, contentType: "application/json", body: b}
}

// csSecurity is CapabilityStatement.rest.security with the SMART oauth-uris extension.
type csSecurity struct {
	Extension []csExtension       `json:"extension"`
	Service   []csCodeableConcept `json:"service"`
}

type csExtension struct {
	URL       string        `json:"url"`
	ValueURI  string        `json:"valueUri,omitempty"`
	Extension []csExtension `json:"extension,omitempty"`
}

type csCodeableConcept struct {
	Coding []csCoding `json:"coding"`
}

type csCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

func (a *authServer) capabilitySecurity(r *http.Request) *csSecurity {
	iss := a.issuer(r)
	return &csSecurity{
		Extension: []csExtension{{
			URL: "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			Extension: []csExtension{
				{URL: "authorize", ValueURI: iss + "/authorize"},
				{URL: "token", ValueURI: iss + "/token"},
				{URL: "introspect", ValueURI: iss + "/introspect"},
				{URL: "revoke", ValueURI: iss + "/revoke"},
			},
		}},
		Service: []csCodeableConcept{{Coding: []csCoding{{
			System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR",
		}}}},
	}
}

// accessGrant is what a valid access token lets a request see.
type accessGrant struct {
	patient string
	perms   permissions
}

// maxBearerLength bounds the Authorization header value the FHIR server will try to open.
const maxBearerLength = 4096

// authenticate validates the request's bearer token: issued by this site, unexpired, unrevoked, and for this
// FHIR base (its aud). It returns the grant, or the 401 response to send.
func (a *authServer) authenticate(r *http.Request) (*accessGrant, *response) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, unauthorized("", "an access token is required")
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > maxBearerLength {
		return nil, unauthorized("invalid_request", "send the access token as Authorization: Bearer")
	}
	if strings.Count(token, ".") == 2 {
		// A JWT: this server's own access tokens are opaque, and the JWTs its authorization server signs
		// (client_credentials) are for the backend audience, never for this FHIR server.
		return nil, unauthorized("invalid_token", "the access token is not for this server")
	}
	id, ok := a.accessTokenID(token)
	if !ok {
		return nil, unauthorized("invalid_token", "the access token is not valid")
	}
	t, ok := a.storage.activeToken(id)
	if !ok {
		return nil, unauthorized("invalid_token", "the access token is expired, revoked or unknown")
	}
	if t.fhirBase != a.site.base(r) {
		return nil, unauthorized("invalid_token", "the access token is for another audience")
	}
	return &accessGrant{patient: t.patient, perms: permissionsOf(t.scopes, a.version)}, nil
}

func unauthorized(code, msg string) *response {
	resp := errorResponse(errorf(http.StatusUnauthorized, "login", "%s", msg))
	v := `Bearer realm="sandbox"`
	if code != "" {
		v += `, error="` + code + `"`
	}
	resp.header = http.Header{"Www-Authenticate": {v}}
	return resp
}

// errForbidden is the error for a request the token's scopes or patient do not cover.
func errForbidden(msg string) *apiError {
	return errorf(http.StatusForbidden, "forbidden", "%s", msg)
}

// forbidden renders an errForbidden with the RFC 6750 insufficient_scope challenge.
func forbidden(err error) *response {
	resp := errorResponse(err)
	resp.header = http.Header{"Www-Authenticate": {`Bearer realm="sandbox", error="insufficient_scope"`}}
	return resp
}

// sharedType reports resource types outside any patient compartment (directory data every patient may read with
// a scope for the type).
func sharedType(typ string) bool {
	switch typ {
	case "Organization", "Practitioner", "PractitionerRole", "Location", "Medication", "HealthcareService", "Endpoint":
		return true
	}
	return false
}

// visible reports whether the grant's patient may see r: it is in the patient's compartment, or shared.
func (g *accessGrant) visible(r *resource) bool {
	return (r.patient != "" && r.patient == g.patient) || (r.patient == "" && sharedType(r.typ))
}

// canRead reports whether the grant's scopes cover reading r's type. A Binary split off a report or document is
// also readable with a scope for that report's or document's type.
func (g *accessGrant) canRead(typ string, r *resource) bool {
	if g.perms.canRead(typ) {
		return true
	}
	return typ == "Binary" && r != nil && r.attachmentOf != "" && g.perms.canRead(r.attachmentOf)
}

// checkSearchParams refuses a search that names another patient: every patient, subject (and, on Patient, _id)
// value must be the grant's patient.
func (g *accessGrant) checkSearchParams(typ string, params []kv) error {
	for _, p := range params {
		name, modifier, hasModifier := strings.Cut(p.key, ":")
		if name != "patient" && name != "subject" && (name != "_id" || typ != "Patient") {
			continue
		}
		for _, v := range splitValues(p.value) {
			c := parseRefCriterion(v)
			if hasModifier {
				c.typ = modifier
			}
			if (c.typ != "" && c.typ != "Patient") || c.id != g.patient {
				return errForbidden("this token only gives access to its own patient's records")
			}
		}
	}
	return nil
}

// restrict narrows a search to what the grant's patient may see.
func (g *accessGrant) restrict(q *searchQuery, typ string) {
	q.preds = append(q.preds, g.visible)
	if !sharedType(typ) && q.patientHint == "" {
		q.patientHint = g.patient
	}
}

// canInclude reports whether an _include'd resource may be returned; others are left out of the Bundle.
func (g *accessGrant) canInclude(r *resource) bool {
	return (g.perms.canRead(r.typ) || g.perms.canSearch(r.typ)) && g.visible(r)
}

// smartConfigPath reports whether segs address .well-known/smart-configuration.
func smartConfigPath(segs []string) bool {
	return slices.Equal(segs, []string{".well-known", "smart-configuration"})
}
