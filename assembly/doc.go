// Package assembly turns a consented review into its packet. Workers in every gateway replica read assembly jobs
// from one Redis Stream consumer group; for each review a worker retrieves from every consented source with the
// patient's grant, de-identifies each source's records under the review's key, merges and signs the packet, runs the
// fail-closed scan over it, and stores it. Delivery is at least once and assembly idempotent: a re-delivered job
// finds the review ready and stops, a crashed worker's job is claimed by another, and failures are retried with
// backoff until the review fails with a reason that is safe to show.
package assembly
