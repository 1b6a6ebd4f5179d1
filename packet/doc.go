// Package packet assembles the review packet a specialist reads: a FHIR R4 document Bundle made of a Composition
// (conditions, diagnostic reports with their results, imaging studies, each section with a generated narrative),
// the de-identified resources of every consented source merged into one record, a Provenance saying where the
// data came from and how it was de-identified, and a detached JWS in Bundle.signature that anyone can verify
// against the gateway's published keys.
//
// Its input is already de-identified (fhir/deid collection Bundles); the package adds no data from elsewhere and
// refers to sources only by kind and ordinal, since a hospital's name locates the patient more precisely than a
// province.
package packet
