// Package auth is the gateway's SMART App Launch 2.x client: it discovers each source's authorization server,
// sends the patient's browser there (standalone or EHR launch) with state, nonce and PKCE S256 kept server-side,
// completes the authorization code flow with client_secret_basic or private_key_jwt, verifies the id_token, and keeps
// the resulting grant sealed at rest. It then hands the FHIR client a token source that refreshes once per grant
// across every replica, and revokes the grant at the source when the patient withdraws consent.
//
// The package never logs, returns or puts in a URL a token, secret, authorization code, state, patient id or name:
// log lines carry the operation, the source id and an error class only.
//
// Storage is reached through two small interfaces defined here, StateStore and GrantStore, which *store.Store
// satisfies.
package auth
