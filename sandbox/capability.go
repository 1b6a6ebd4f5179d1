package sandbox

import (
	"net/http"
	"slices"

	"github.com/go-json-experiment/json"
)

// capabilityDate is when the shape of this server's CapabilityStatement last changed.
const capabilityDate = "2025-06-01"

type capabilityStatement struct {
	ResourceType   string           `json:"resourceType"`
	Status         string           `json:"status"`
	Date           string           `json:"date"`
	Kind           string           `json:"kind"`
	Software       csSoftware       `json:"software"`
	Implementation csImplementation `json:"implementation"`
	FHIRVersion    string           `json:"fhirVersion"`
	Format         []string         `json:"format"`
	Rest           []csRest         `json:"rest"`
}

type csSoftware struct {
	Name string `json:"name"`
}

type csImplementation struct {
	Description string `json:"description"`
	URL         string `json:"url"`
}

type csRest struct {
	Mode     string       `json:"mode"`
	Security *csSecurity  `json:"security,omitempty"`
	Resource []csResource `json:"resource"`
}

type csResource struct {
	Type          string          `json:"type"`
	Interaction   []csInteraction `json:"interaction"`
	SearchInclude []string        `json:"searchInclude,omitempty"`
	SearchParam   []csSearchParam `json:"searchParam,omitempty"`
}

type csInteraction struct {
	Code string `json:"code"`
}

type csSearchParam struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// capabilities describes exactly what this site implements: every type it has data for plus the core search
// types, each with read and search-type and the parameters in searchParams.
func (s *Site) capabilities(r *http.Request) *response {
	types := coreSearchTypes()
	for t := range s.store.types {
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	res := make([]csResource, 0, len(types))
	for _, t := range types {
		c := csResource{
			Type:        t,
			Interaction: []csInteraction{{Code: "read"}, {Code: "search-type"}},
		}
		for _, p := range searchParams(t) {
			c.SearchParam = append(c.SearchParam, csSearchParam{Name: p.name, Type: p.kind.fhirType()})
		}
		if t == "DiagnosticReport" && !s.disableInclude {
			c.SearchInclude = []string{"DiagnosticReport:result"}
		}
		res = append(res, c)
	}
	cs := capabilityStatement{
		ResourceType: "CapabilityStatement",
		Status:       "active",
		Date:         capabilityDate,
		Kind:         "instance",
		Software:     csSoftware{Name: "secondlook sandbox"},
		Implementation: csImplementation{
			Description: "secondlook sandbox site " + s.name + " (synthetic test data)",
			URL:         s.base(r),
		},
		FHIRVersion: "4.0.1",
		Format:      []string{"json", "application/fhir+json"},
		Rest:        []csRest{{Mode: "server", Resource: res}},
	}
	if s.auth != nil {
		cs.Rest[0].Security = s.auth.capabilitySecurity(r)
	}
	b, err := json.Marshal(cs)
	if err != nil {
		return errorResponse(errorf(http.StatusInternalServerError, "exception", "internal server error"))
	}
	return jsonResponse(http.StatusOK, b)
}
