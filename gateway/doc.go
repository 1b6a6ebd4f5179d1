// Package gateway assembles a running secondlook from its parts: the Redis store, the SMART client and a FHIR
// client per source, the caller verifier, the HTTP edge and the assembly workers. It is the one place that knows
// how they fit together; `secondlook serve` builds its Options from the configuration file and `secondlook demo`
// from the sandbox it starts.
package gateway
