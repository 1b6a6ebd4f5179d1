package demo

import (
	"encoding/json"
	"fmt"
)

// split divides a Synthea transaction bundle the way a patient's records are divided in life: the provincial
// laboratory repository holds the laboratory reports and their results; the hospital holds everything else (notes,
// imaging, conditions, encounters). Both hold the Patient and the organizations and practitioners the records name.
func split(bundle []byte) (hospital, province []byte, err error) {
	var b struct {
		ResourceType string            `json:"resourceType"`
		Type         string            `json:"type"`
		Entry        []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		return nil, nil, fmt.Errorf("split bundle: %w", err)
	}
	var h, p []json.RawMessage
	for _, e := range b.Entry {
		var en struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				Category     []struct {
					Coding []struct {
						Code string `json:"code"`
					} `json:"coding"`
				} `json:"category"`
			} `json:"resource"`
		}
		if err := json.Unmarshal(e, &en); err != nil {
			return nil, nil, fmt.Errorf("split bundle: %w", err)
		}
		switch en.Resource.ResourceType {
		case "Patient", "Organization", "Practitioner", "PractitionerRole", "Location":
			h, p = append(h, e), append(p, e)
		case "Observation":
			p = append(p, e)
		case "DiagnosticReport":
			lab := false
			for _, c := range en.Resource.Category {
				for _, cd := range c.Coding {
					if cd.Code == "LAB" {
						lab = true
					}
				}
			}
			if lab {
				p = append(p, e)
			} else {
				h = append(h, e)
			}
		default:
			h = append(h, e)
		}
	}
	enc := func(entries []json.RawMessage) ([]byte, error) {
		return json.Marshal(map[string]any{"resourceType": "Bundle", "type": b.Type, "entry": entries})
	}
	if hospital, err = enc(h); err != nil {
		return nil, nil, err
	}
	province, err = enc(p)
	return hospital, province, err
}
