// Package api is secondlook's HTTP edge: the only package that knows Echo. It authenticates callers, applies limits
// and security headers, renders the patient's pages, and turns every error into one response shape —
// application/problem+json (RFC 9457) on the API, an OperationOutcome on FHIR endpoints — in exactly one place,
// the error handler. Handlers are structs that name their dependencies and mount their own routes.
package api
