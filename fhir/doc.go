// Package fhir is secondlook's FHIR R4 REST client: it reads one patient's records from a hospital or provincial FHIR
// server that secondlook does not control, and keeps each resource's original JSON for the stages that follow
// (de-identification, packet assembly).
//
// The client uses only standard FHIR REST (capabilities, read, search with paging and _include), so it works against
// any conformant R4 server. It is defensive by construction: every response has a body-size and JSON-depth limit,
// every retrieval caps pages, resources and bytes, paging follows only links under the source's own base URL, tokens
// are sent only to that base, and retries (429, 502, 503, 504 and network errors, honouring Retry-After) are bounded
// by the caller's context deadline. Errors and log lines name operations and resource types, never identifiers,
// URLs with query strings, or anything from a resource body.
package fhir
