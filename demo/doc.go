// Package demo runs the whole of secondlook on one machine: a sandbox with two sites (a hospital and a provincial
// laboratory repository, each with its own SMART authorization server, the demo patients' records split between
// them), the gateway with its workers, and Redis (embedded unless REDIS_URL names one). Start prints where to
// click; Walkthrough plays every part over HTTP — the EHR creates a review, the patient consents at both sites,
// the provider fetches the packet and checks its signature and that it carries no PHI.
//
// It is a demo and test peer: production code never imports it.
package demo
