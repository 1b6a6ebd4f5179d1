// Package sandbox is a small FHIR R4 server used only as a test and demo peer for the gateway: it loads Synthea
// transaction Bundles the way a real server would (urn:uuid and conditional references become Type/id), indexes
// them once, and answers read, search, paging, _include and metadata requests for one or more "hospital" sites,
// each under its own base URL /{site}/fhir. Per-site fault injection (status codes, latency, truncated or slow
// bodies, rewritten or replaced bodies) lets client tests exercise their error paths against a real HTTP peer.
//
// A site may also run a SMART App Launch 2.x authorization server (SiteOptions.Auth), an OpenID provider built on
// github.com/zitadel/oidc/v3/pkg/op, under /{site}/auth: authorization code flow with PKCE S256 and aud required,
// a patient sign-in page where the patient picks a record, unticks resource types and approves or denies, EHR
// launch (Site.NewEHRLaunch), client_secret_basic and private_key_jwt (RS384, ES384) client authentication,
// refresh token rotation, introspection and revocation. The site's FHIR server then requires its access tokens
// (401 without one; 403 for a resource type or another patient's search the token does not cover; another
// patient's resource reads as 404) and serves <base>/.well-known/smart-configuration without one.
//
// The authorization server also issues tokens for another server, such as the gateway's API: SMART Backend
// Services (client_credentials with a private_key_jwt assertion, system/ scopes) for clients with a
// Client.BackendAudience. Those access tokens are RS256 JWTs signed with the site's key and verifiable after
// OpenID discovery at the issuer, with aud = the backend audience, at most five minutes long and without a refresh
// token; the site's own FHIR server refuses them.
//
// Production code never imports this package. It keeps everything in memory, serves JSON only and never logs
// resource content, names, identifiers or tokens: request logs carry the site, the interaction, the resource type
// and the status, not the path or query. (The op library logs authorization errors through the default slog
// logger: error codes and descriptions, and for error redirects the redirect URL with the client's state, never
// a code or token.)
package sandbox
