package deid

import (
	"encoding/json"
	"reflect"
	"strings"

	"github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// resourceTypes maps the FHIR R4 resource types a profile may name to their samply model types. The models are
// used only when a profile is compiled, to learn element names and datatypes; resources are never decoded into them
// (they drop contained resources and primitive extensions).
func resourceTypes() map[string]reflect.Type {
	return map[string]reflect.Type{
		"AllergyIntolerance":       reflect.TypeFor[fhir.AllergyIntolerance](),
		"CarePlan":                 reflect.TypeFor[fhir.CarePlan](),
		"CareTeam":                 reflect.TypeFor[fhir.CareTeam](),
		"Claim":                    reflect.TypeFor[fhir.Claim](),
		"Condition":                reflect.TypeFor[fhir.Condition](),
		"Coverage":                 reflect.TypeFor[fhir.Coverage](),
		"Device":                   reflect.TypeFor[fhir.Device](),
		"DiagnosticReport":         reflect.TypeFor[fhir.DiagnosticReport](),
		"DocumentReference":        reflect.TypeFor[fhir.DocumentReference](),
		"Encounter":                reflect.TypeFor[fhir.Encounter](),
		"Endpoint":                 reflect.TypeFor[fhir.Endpoint](),
		"ExplanationOfBenefit":     reflect.TypeFor[fhir.ExplanationOfBenefit](),
		"FamilyMemberHistory":      reflect.TypeFor[fhir.FamilyMemberHistory](),
		"Goal":                     reflect.TypeFor[fhir.Goal](),
		"ImagingStudy":             reflect.TypeFor[fhir.ImagingStudy](),
		"Immunization":             reflect.TypeFor[fhir.Immunization](),
		"Location":                 reflect.TypeFor[fhir.Location](),
		"Media":                    reflect.TypeFor[fhir.Media](),
		"Medication":               reflect.TypeFor[fhir.Medication](),
		"MedicationAdministration": reflect.TypeFor[fhir.MedicationAdministration](),
		"MedicationRequest":        reflect.TypeFor[fhir.MedicationRequest](),
		"MedicationStatement":      reflect.TypeFor[fhir.MedicationStatement](),
		"Observation":              reflect.TypeFor[fhir.Observation](),
		"Organization":             reflect.TypeFor[fhir.Organization](),
		"Patient":                  reflect.TypeFor[fhir.Patient](),
		"Person":                   reflect.TypeFor[fhir.Person](),
		"Practitioner":             reflect.TypeFor[fhir.Practitioner](),
		"PractitionerRole":         reflect.TypeFor[fhir.PractitionerRole](),
		"Procedure":                reflect.TypeFor[fhir.Procedure](),
		"Provenance":               reflect.TypeFor[fhir.Provenance](),
		"RelatedPerson":            reflect.TypeFor[fhir.RelatedPerson](),
		"ServiceRequest":           reflect.TypeFor[fhir.ServiceRequest](),
		"Specimen":                 reflect.TypeFor[fhir.Specimen](),
	}
}

// field describes one JSON member of a samply model struct.
type field struct {
	name  string
	typ   reflect.Type // element type with pointers and slices removed
	array bool
}

// fieldsOf lists the JSON members of a samply struct type in declaration order.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		array := false
		for {
			switch ft.Kind() {
			case reflect.Pointer:
				ft = ft.Elem()
				continue
			case reflect.Slice:
				if ft == reflect.TypeFor[json.RawMessage]() {
					break
				}
				array = true
				ft = ft.Elem()
				continue
			}
			break
		}
		out = append(out, field{name: name, typ: ft, array: array})
	}
	return out
}

// lookupField finds the member called name in struct type t.
func lookupField(t reflect.Type, name string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// choiceFields expands a choice element such as "value[x]" into its concrete members (valueQuantity, valueString…).
func choiceFields(t reflect.Type, base string) []field {
	var out []field
	for _, f := range fieldsOf(t) {
		if len(f.name) > len(base) && strings.HasPrefix(f.name, base) {
			c := f.name[len(base)]
			if c >= 'A' && c <= 'Z' {
				out = append(out, f)
			}
		}
	}
	return out
}

// kindOf classifies a datatype for the treatments that apply to it whatever the profile says.
func kindOf(t reflect.Type, name string, parent reflect.Type) kind {
	switch t {
	case reflect.TypeFor[json.Number]():
		return kNumber
	case reflect.TypeFor[json.RawMessage]():
		return kDrop
	}
	if t.PkgPath() != "" && t.Kind() != reflect.Struct {
		return kCode // a samply enum (an int with its own JSON form): a FHIR code
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Float64:
		return kNumber
	case reflect.String:
		if t.Name() != "string" {
			return kCode // a samply enum: a FHIR code
		}
		if isDateElement(name, parent) {
			return kDate
		}
		if structuralNames[name] {
			return kCode
		}
		if name == "uid" {
			return kUID
		}
		return kText
	case reflect.Struct:
		switch t.Name() {
		case "Reference":
			return kReference
		case "Identifier":
			return kIdentifier
		case "Attachment":
			return kAttachment
		case "Address":
			return kAddress
		case "HumanName", "ContactPoint", "Narrative", "Meta", "Signature":
			return kDrop
		case "Extension":
			return kExtension
		case "Quantity", "Age", "Duration", "Count", "Distance":
			return kQuantity
		}
		return kObject
	}
	return kDrop
}

// structuralNames are string members whose FHIR type is code, uri, canonical, id or oid: they are kept verbatim
// (and still pass the residual scan) rather than scrubbed as free text.
var structuralNames = map[string]bool{
	"system": true, "code": true, "version": true, "language": true, "contentType": true, "url": true,
	"valueCode": true, "valueUri": true, "valueUrl": true, "valueCanonical": true, "valueOid": true,
	"valueUuid": true, "valueId": true, "implicitRules": true, "instantiatesCanonical": true,
	"instantiatesUri": true, "profile": true, "comparator": true, "type": true,
}

// isDateElement reports whether a string member has FHIR type date, dateTime or instant.
func isDateElement(name string, parent reflect.Type) bool {
	switch name {
	case "date", "issued", "started", "authoredOn", "created", "start", "end", "time", "recorded",
		"lastOccurrence", "whenHandedOver", "whenPrepared", "creation", "receivedTime", "timestamp",
		"dateAsserted", "birthDate", "lastUpdated", "onset", "expirationDate", "recordedDate",
		"assertedDate", "dateWritten", "occurrence", "statusDate", "lastPerformed", "dueDate":
		return true
	case "event":
		return parent != nil && parent.Name() == "Timing"
	}
	return strings.HasSuffix(name, "DateTime") || strings.HasSuffix(name, "Instant") ||
		strings.HasSuffix(name, "Date") || strings.HasSuffix(name, "DateTime")
}

// extensionType is the samply model of FHIR Extension.
type extensionType = fhir.Extension

// allR4Types lists every FHIR R4 resource type name, so reports and reference parsing never echo other strings.
var allR4Types = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range strings.Fields(`Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment
	AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
	CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem
	Communication CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage
	CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric
	DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
	Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable
	ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse
	HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide
	InsurancePlan Invoice Library Linkage List Location Measure MeasureReport Media Medication
	MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement
	MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
	MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged
	MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition MessageHeader
	MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition
	OperationOutcome Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation
	Person PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse
	RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject
	RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
	StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein
	SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
	TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription`) {
		m[t] = true
	}
	return m
}()
