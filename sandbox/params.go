package sandbox

// paramKind is the FHIR search parameter type of an implemented parameter.
type paramKind int

const (
	kindID paramKind = iota // _id: exact match on Resource.id (a token in FHIR terms)
	kindToken
	kindString
	kindDate
	kindReference
)

func (k paramKind) fhirType() string {
	switch k {
	case kindString:
		return "string"
	case kindDate:
		return "date"
	case kindReference:
		return "reference"
	default:
		return "token"
	}
}

// paramDef is one search parameter this server implements for a resource type. Everything advertised in the
// CapabilityStatement comes from here, and the search code rejects (strict) or ignores (lenient) anything else.
type paramDef struct {
	name string
	kind paramKind
}

// coreSearchTypes are the resource types with a full set of search parameters. They are always served (an empty
// site answers their searches with an empty Bundle), loaded or not.
func coreSearchTypes() []string {
	return []string{"Condition", "DiagnosticReport", "DocumentReference", "Encounter", "ImagingStudy", "Observation", "Patient"}
}

// searchParams lists the search parameters implemented for typ. Every other loaded type gets _id, plus patient
// when FHIR R4 defines that parameter for it (see patientElement).
func searchParams(typ string) []paramDef {
	id := paramDef{"_id", kindID}
	patient := paramDef{"patient", kindReference}
	subject := paramDef{"subject", kindReference}
	switch typ {
	case "Patient":
		return []paramDef{id, {"identifier", kindToken}, {"name", kindString}, {"birthdate", kindDate}}
	case "DiagnosticReport", "Observation":
		return []paramDef{id, patient, subject, {"category", kindToken}, {"code", kindToken}, {"date", kindDate}}
	case "ImagingStudy":
		return []paramDef{id, patient, subject, {"started", kindDate}, {"modality", kindToken}}
	case "Condition":
		return []paramDef{id, patient, subject, {"category", kindToken}, {"code", kindToken},
			{"onset-date", kindDate}, {"recorded-date", kindDate}}
	case "DocumentReference":
		return []paramDef{id, patient, subject, {"category", kindToken}, {"type", kindToken}, {"date", kindDate}}
	case "Encounter":
		return []paramDef{id, patient, subject, {"date", kindDate}, {"type", kindToken}}
	}
	if patientElement(typ) != "" {
		return []paramDef{id, patient}
	}
	return []paramDef{id}
}

// patientElement names the element behind FHIR R4's "patient" search parameter for types outside
// coreSearchTypes, or "" when this server does not implement one for typ.
func patientElement(typ string) string {
	switch typ {
	case "AllergyIntolerance", "Claim", "ExplanationOfBenefit", "Immunization", "FamilyMemberHistory":
		return "patient"
	case "CarePlan", "CareTeam", "Goal", "MedicationRequest", "MedicationAdministration", "MedicationStatement",
		"Procedure", "ServiceRequest", "Media":
		return "subject"
	}
	return ""
}

// primaryDate is the date parameter that _sort=date stands for on types whose date parameter has another name.
func primaryDate(typ string) string {
	switch typ {
	case "Patient":
		return "birthdate"
	case "ImagingStudy":
		return "started"
	case "Condition":
		return "onset-date"
	case "DiagnosticReport", "Observation", "DocumentReference", "Encounter":
		return "date"
	}
	return ""
}

func findParam(defs []paramDef, name string) (paramDef, bool) {
	for _, d := range defs {
		if d.name == name {
			return d, true
		}
	}
	return paramDef{}, false
}
