// Package sandbox is a small FHIR R4 server used only as a test and demo peer for the gateway: it loads Synthea
// transaction Bundles the way a real server would (urn:uuid and conditional references become Type/id), indexes
// them once, and answers read, search, paging, _include and metadata requests for one or more "hospital" sites,
// each under its own base URL /{site}/fhir. Per-site fault injection (status codes, latency, truncated or slow
// bodies, rewritten or replaced bodies) lets client tests exercise their error paths against a real HTTP peer.
//
// Production code never imports this package. It keeps everything in memory, serves JSON only and never logs
// resource content, names, identifiers or tokens: request logs carry the site, the interaction, the resource type
// and the status, not the path or query.
package sandbox
