// Package secondlook holds the gateway's API description, openapi.yaml, so the binary can serve it and tests can
// validate every request and response against it. The code lives in the packages below this one.
package secondlook

import _ "embed"

// OpenAPI is openapi.yaml, the description of every endpoint the gateway serves.
//
//go:embed openapi.yaml
var OpenAPI []byte
