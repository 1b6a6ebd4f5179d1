// Package deid de-identifies one patient's FHIR R4 resources for an external specialist: it keeps every code,
// value, unit, status, category, conclusion and (scrubbed) report text of the clinical resources, and lets no
// identifier of the patient through. It has no HTTP in it; the gateway calls Deidentify on the raw JSON it
// retrieved and ships Result.Bundle.
//
// # Input and output
//
// The input is raw JSON: a Bundle of any type (transaction, searchset, collection…) or a single resource. It is
// tokenized once with jsontext into a flat tape (no reflection, no Go model types, contained resources and
// primitive extensions intact) and limited by Limits (size, nesting depth, string length, entry count); invalid
// JSON or UTF-8 is an *InputError (defaults: 256 MiB input, nesting depth 64, 32 MiB per string, 200,000
// entries; a UTF-8 byte order mark is tolerated, duplicate member names are not). The output is a collection Bundle of the in-scope resources plus a Report
// (profile name and version, key id, counts per action and element path, dropped resource types and elements,
// warnings) that holds no PHI.
//
// # Profiles
//
// A profile is a declarative, versioned allow-list (YAML or JSON) listing, per resource type, the elements kept
// and the treatment of each:
//
//	profile: safe-harbor
//	version: 1.0.0
//	fhirVersion: 4.0.1
//	extensions: [http://hl7.org/fhir/StructureDefinition/data-absent-reason]
//	resources:
//	  Patient:
//	    gender: keep
//	    birthDate: generalize
//	    deceased[x]: generalize
//	    address: generalize
//	  Practitioner: {}              # a pseudonymous stub: resourceType and id only
//	  Observation:
//	    status: keep
//	    code: keep
//	    value[x]: keep              # block style: YAML flow mappings need "value[x]" quoted
//	  ImagingStudy:
//	    identifier: uid
//	    series.uid: uid
//	    series.instance.uid: uid
//
// Paths are dotted element names; "name[x]" expands to every choice type. Treatments: keep, generalize (Address,
// Patient.birthDate, Patient.deceased[x]), pseudonymize (Identifier), uid (ImagingStudy UIDs), drop. Anything not
// listed (resource type, element, extension URL) is dropped and counted. LoadProfile returns an embedded profile
// ("safe-harbor" is the default), ParseProfile a user's file; both validate every path against the FHIR R4
// element names of the samply models and report every problem at once in a *ProfileError. The models are used
// only at load time, to compile the profile into a tree of nodes the transformer follows.
//
// # Rules no profile can switch off
//
// Whatever a profile keeps, these datatype rules apply: resource ids become keyed pseudonyms and fullUrl is
// urn:uuid:<pseudonym>; a Reference keeps only a reference that resolves inside the output (rewritten to the
// target's urn:uuid) and its type, so display, identifier and dangling or external references are removed;
// contained resources follow their own type's rules, are renumbered c1, c2… and "#" references follow them;
// Identifier, HumanName, ContactPoint, Narrative (text.div), Meta (meta.lastUpdated, meta.source…), Signature,
// Annotation.authorString and modifier extensions never pass (a resource with a modifier extension is dropped);
// every Address is generalized; dates are shifted; strings are scrubbed; attachments are scrubbed or dropped;
// ImagingStudy UIDs are replaced; Endpoint resources are dropped; a resource or backbone element carrying a
// modifier extension is dropped. The Bundle and every resource in it carry meta.security PSEUDED and REDACTED
// from http://terminology.hl7.org/CodeSystem/v3-ObservationValue (contained resources are covered by their
// container's labels).
//
// # Keys and pseudonyms
//
// Every keyed value is HMAC-SHA256 under Key.Secret (at least 32 bytes) with a purpose label and Options.Scope
// (the review id): resource pseudonyms (the first 128 bits as an RFC 9562 version 8 UUID), pseudonymous
// identifiers (system urn:secondlook:deid:pseudonym), the date shift and DICOM UIDs. The same key and scope give
// byte-identical output; another key or scope gives unlinkable pseudonyms, shift and UIDs. Only Key.ID appears
// in the report.
//
// # Dates
//
// One day shift per review: a keyed whole number of days in [-365, -1] ∪ [1, 365], the same for every
// resource, so every interval between two events is preserved exactly. Rules:
//   - Full dates (YYYY-MM-DD) move by the shift.
//   - dateTime and instant values move their calendar date by the shift and keep the time of day, fractional
//     seconds and UTC offset exactly as written. The instant therefore moves by exactly shift×24 h, so
//     intervals between two dateTimes are preserved to the second whatever the offsets or daylight saving.
//   - Partial dates keep their precision: YYYY-MM becomes the month of (YYYY-MM-15 + shift); YYYY becomes the
//     year of (YYYY-07-02 + shift). Intervals involving partial dates are preserved to within their precision.
//   - Dates written in free text (2010-04-27 with an optional time, 2010/04/27, 04/27/2010 and 04/27/10
//     (month first unless the first number exceeds 12), 27-Apr-2010, 27-APR-10, 27 April 2010, April 27, 2010,
//     Apr 2010, 2010-04) are shifted the same way and keep their format; two-digit years take the century that
//     is not in the future of Options.Now. An impossible date in text becomes [DATE]; an unparseable date
//     element is dropped. Weekday names (English and French) become [DAY], since next to a shifted date they
//     would give the shift away modulo 7.
//   - Times without dates (time, Timing.repeat.timeOfDay) are not shifted.
//   - If a shifted date would reproduce the patient's true birth date verbatim (a coincidence the residual scan
//     cannot tell from a leak), the next keyed shift (attempt 1, 2…) is used; this is deterministic.
//
// # Age
//
// Ages of 90 and over are never revealed. The patient's age is taken on the date of death if one is recorded,
// otherwise today (Options.Now), from the earliest day the birth date allows. Under 90, Patient.birthDate is
// shifted like every other date (so the age at every event is exact). At 90 or over, birthDate is withheld and
// Patient carries the extension urn:secondlook:deid:age-category with valueString "90+"; since no birth date is
// released, no other date reveals the age. Independently, every Age or Quantity in years (a, yr, year…), months,
// weeks or days that amounts to 90 years or more becomes value 90 with comparator ">=", and ages written in
// text ("93 year-old", "aged 93") become "90+". For a patient aged 90 or over, dates written in text within a
// year of the birth date and the birth year itself (±1) become [DATE].
//
// # Geography
//
// Address keeps use, type, state or province, country and a generalized postal code: a Canadian postal code
// keeps its forward sortation area ("K1S 5B6" → "K1S"); a US ZIP keeps three digits, and the restricted
// prefixes of the HHS Safe Harbor guidance (036, 059, 063, 102, 203, 556, 692, 790, 821, 823, 830, 831, 878,
// 879, 884, 890, 893) become "000"; any other postal code is removed. Lines, city, district, text, period and
// geolocation extensions are removed.
//
// # Free text
//
// Every non-structural string that is kept (CodeableConcept.text, Coding.display, conclusion, note, valueString,
// description, title…) and every text/* attachment (base64-decoded, scrubbed, re-encoded; other attachments are
// dropped and reported; attachment URLs, sizes and hashes removed) is scrubbed, not deleted:
//   - every identifying string collected from the input is replaced by a typed placeholder: name parts and
//     spellings with and without Synthea's numeric suffixes ([NAME]) of the patient, contacts, related persons,
//     clinicians (from their resources and from Reference.display) and maiden-name extensions; identifier
//     values, with or without separators ([ID]); phones ([PHONE]); emails ([EMAIL]); address lines, cities,
//     districts and postal codes ([ADDRESS]); organization and location names ([LOCATION]); UIDs; URLs. Matching
//     is case-insensitive on ASCII, anchored on word boundaries and ignores separators (spaces, dashes, dots,
//     parentheses…) between alphanumerics;
//   - pattern detectors catch what the record does not list: emails, URLs (http, https, ftp, www.), IPv4
//     addresses ([IP]), Canadian postal codes with or without the space ([ADDRESS]), phone numbers ([PHONE]),
//     runs of 7 or more digits with separators (Ontario health card 1234 567 890 with its version code, BC PHN,
//     other provinces' 9-digit numbers, SIN, US SSN: [ID]), Quebec RAMQ numbers (ABCD 1234 5678), MRN-like
//     alphanumeric tokens (6 or more digits, or 5 digits with up to 3 letters), numbers of 4 or more digits
//     after a keyword such as MRN, HCN, PHN, SIN, SSN, chart or account, and capitalized words after a title
//     or kinship word (Dr, Mme, son, daughter, mother, fils, fille…: "Dr Lavoie", "her son Luc") even when the
//     record does not list the name ([NAME]).
//
// There is no statistical name recognizer: a name that the record does not list and that no title or kinship
// word announces (or one written in lower case) is not found by the scrubber. Case folding covers ASCII and
// the Latin-1 letters (accents are folded: "Émilie" matches "emilie"), not other scripts.
//
// Structural strings (code, system, version, url, contentType, language and other code/uri types) are kept
// verbatim and still pass the residual scan.
//
// # Fail closed
//
// Every string written to the output (and every decoded attachment, and every number of 7 or more characters)
// passes the residual scan before it is written: an Aho–Corasick automaton over the normalized text (lower-case
// alphanumerics, separators removed) for every identifier, phone, email, address, UID, URL, distinctive name
// word and long name phrase collected from the input, an exact word table for name parts and for numeric
// identifiers shorter than 7 digits (which would otherwise be found by chance inside dates and measurements
// once separators are removed), and a verbatim search for the true birth date. Shifted date elements, built
// from parsed numbers, are checked against the birth date only. The only exemptions are the values the package generates itself from HMAC output (pseudonyms, UIDs) and
// the fixed vocabulary it writes (element names, labels). Any hit rejects the whole output with a
// *ResidualError naming the element path and the kind of identifier, never the value. No profile can switch it
// off. No error of this package contains input content.
package deid
