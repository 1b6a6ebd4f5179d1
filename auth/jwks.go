package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"secondlook/tracing"
)

// maxJWKSBytes bounds a source's JWKS document.
const maxJWKSBytes = 1 << 20

// jwksTransport lets go-oidc read JWKS documents that encode key parameters in padded base64url, as Java's
// Base64.getUrlEncoder does (the Inferno reference server, for one): go-jose accepts only unpadded base64url (RFC 7518).
// It rewrites only responses to the source's jwks_uri, only by trimming "=" from string members of each key, and
// bounds the document's size.
type jwksTransport struct {
	base    http.RoundTripper
	jwksURL string
}

func (t *jwksTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.WithContext(tracing.WithOperation(req.Context(), "jwks"))
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.URL.String() != t.jwksURL || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("jwks document too large")
	}
	if fixed, ok := unpadJWKS(body); ok {
		body = fixed
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// unpadJWKS trims base64 padding from the key parameters of a JWKS; it reports false (leaving the document to
// go-oidc's own error handling) when the document is not a JWKS.
func unpadJWKS(body []byte) ([]byte, bool) {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return nil, false
	}
	var keys []map[string]any
	if json.Unmarshal(doc["keys"], &keys) != nil {
		return nil, false
	}
	for _, k := range keys {
		for _, param := range []string{"n", "e", "x", "y"} {
			if s, ok := k[param].(string); ok {
				k[param] = strings.TrimRight(s, "=")
			}
		}
	}
	raw, err := json.Marshal(keys)
	if err != nil {
		return nil, false
	}
	doc["keys"] = raw
	out, err := json.Marshal(doc)
	return out, err == nil
}
