// Package caller authenticates the systems that call the gateway's API: hospital EHR integrations, which create
// and follow reviews, and second-opinion providers, which read packets. Each presents a bearer JWT from a trusted
// issuer (SMART Backend Services: client_credentials with private_key_jwt), verified with go-oidc against the
// issuer's published keys (discovered, cached and rotated by go-oidc); the token's client is then looked up in the
// issuer's configured clients to learn what kind of caller it is.
package caller
