// Package consent holds the patient's decision: for one review and one source, which resource types the patient
// let the gateway read, for which provider, until when. A decision is recorded as a FHIR R4 Consent resource
// (patient-privacy scope, a permit provision with the provider as recipient, the granted types as classes, the
// period) so it can be shown, audited and exchanged in the standard's own terms.
package consent
