package fhir

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// Capabilities is what the client learned from the server's CapabilityStatement.
type Capabilities struct {
	FHIRVersion string
	// Resources maps a resource type to what the server supports for it.
	Resources map[string]ResourceCapability
	// SMART lists the SMART capabilities named in the security extension, when present.
	SecurityServices []string
}

// ResourceCapability is one rest.resource entry.
type ResourceCapability struct {
	Interactions  map[string]bool // read, search-type, ...
	SearchParams  map[string]string
	SearchInclude map[string]bool
}

// Supports reports whether the server declares the search parameter for the type.
func (c *Capabilities) Supports(resourceType, param string) bool {
	rc, ok := c.Resources[resourceType]
	if !ok {
		return false
	}
	_, ok = rc.SearchParams[param]
	return ok
}

// SupportsInclude reports whether the server declares the _include value for the type, e.g.
// ("DiagnosticReport", "DiagnosticReport:result"). A "*" wildcard counts.
func (c *Capabilities) SupportsInclude(resourceType, include string) bool {
	rc, ok := c.Resources[resourceType]
	if !ok {
		return false
	}
	return rc.SearchInclude[include] || rc.SearchInclude["*"]
}

// CanSearch reports whether the server declares search-type for the type. A server that lists the type with search
// parameters but no interactions is taken to support search.
func (c *Capabilities) CanSearch(resourceType string) bool {
	rc, ok := c.Resources[resourceType]
	if !ok {
		return false
	}
	return rc.Interactions["search-type"] || (len(rc.Interactions) == 0 && len(rc.SearchParams) > 0)
}

// capabilityStatement is the part of a CapabilityStatement the client reads. It is decoded leniently on purpose:
// the typed models reject any code they do not know, and a server's capability statement often carries codes from
// later FHIR versions that do not matter here.
type capabilityStatement struct {
	ResourceType string `json:"resourceType"`
	FHIRVersion  string `json:"fhirVersion"`
	Rest         []struct {
		Mode     string `json:"mode"`
		Security struct {
			Service []struct {
				Coding []struct {
					Code string `json:"code"`
				} `json:"coding"`
			} `json:"service"`
		} `json:"security"`
		Resource []struct {
			Type        string `json:"type"`
			Interaction []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			SearchInclude []string `json:"searchInclude"`
			SearchParam   []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"searchParam"`
		} `json:"resource"`
		SearchParam []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"searchParam"`
	} `json:"rest"`
}

// Capabilities reads the server's CapabilityStatement once and caches it for the life of the Client. A failed read
// is not cached, so the next call tries again.
func (c *Client) Capabilities(ctx context.Context) (*Capabilities, error) {
	return c.capabilities(ctx, &stats{})
}

// capabilities counts a metadata read, when one is needed, in st.
func (c *Client) capabilities(ctx context.Context, st *stats) (*Capabilities, error) {
	c.capMu.Lock()
	defer c.capMu.Unlock()
	if c.caps != nil {
		return c.caps, nil
	}
	caps, err := c.fetchCapabilities(ctx, st)
	if err != nil {
		return nil, err
	}
	c.caps = caps
	return caps, nil
}

func (c *Client) fetchCapabilities(ctx context.Context, st *stats) (*Capabilities, error) {
	req := request{op: "read metadata", url: c.base.JoinPath("metadata"), accept: fhirJSON, maxBody: c.opts.Limits.MaxBodyBytes}
	var caps *Capabilities
	err := c.do(ctx, st, req, func(body io.Reader, resp *http.Response) error {
		if err := checkContentType(resp); err != nil {
			return fmt.Errorf("read metadata: %w", err)
		}
		var err error
		caps, err = readCapabilities(body, c.opts.Limits.MaxJSONDepth)
		return err
	})
	if err != nil {
		return nil, err
	}
	return caps, nil
}

// readCapabilities decodes a CapabilityStatement body and keeps what the client uses. It refuses anything that is
// not a CapabilityStatement declaring FHIR 4.0.x.
func readCapabilities(body io.Reader, maxDepth int) (*Capabilities, error) {
	v, err := jsontext.NewDecoder(body).ReadValue()
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", jsonErr(err))
	}
	if err := checkDepth(v, maxDepth); err != nil {
		return nil, err
	}
	var cs capabilityStatement
	if err := json.Unmarshal(v, &cs); err != nil {
		return nil, fmt.Errorf("read metadata: %w: CapabilityStatement is malformed", ErrInvalidResponse)
	}
	if cs.ResourceType != "CapabilityStatement" {
		return nil, fmt.Errorf("read metadata: %w: not a CapabilityStatement", ErrInvalidResponse)
	}
	if !strings.HasPrefix(cs.FHIRVersion, "4.0.") {
		return nil, fmt.Errorf("read metadata: %w (declares %q)", ErrUnsupportedVersion, safeCode(cs.FHIRVersion))
	}
	caps := &Capabilities{FHIRVersion: cs.FHIRVersion, Resources: map[string]ResourceCapability{}}
	for _, rest := range cs.Rest {
		if rest.Mode != "" && rest.Mode != "server" {
			continue
		}
		for _, s := range rest.Security.Service {
			for _, cd := range s.Coding {
				caps.SecurityServices = append(caps.SecurityServices, cd.Code)
			}
		}
		for _, r := range rest.Resource {
			rc := ResourceCapability{Interactions: map[string]bool{}, SearchParams: map[string]string{}, SearchInclude: map[string]bool{}}
			for _, in := range r.Interaction {
				rc.Interactions[in.Code] = true
			}
			for _, sp := range rest.SearchParam {
				rc.SearchParams[sp.Name] = sp.Type
			}
			for _, sp := range r.SearchParam {
				rc.SearchParams[sp.Name] = sp.Type
			}
			for _, inc := range r.SearchInclude {
				rc.SearchInclude[inc] = true
			}
			caps.Resources[r.Type] = rc
		}
	}
	return caps, nil
}

const fhirJSON = "application/fhir+json"

// checkContentType accepts JSON media types (application/fhir+json, application/json, application/json+fhir) and
// rejects anything else, such as the HTML error page of a proxy answering 200.
func checkContentType(resp *http.Response) error {
	if isFHIRJSON(resp.Header.Get("Content-Type")) {
		return nil
	}
	return fmt.Errorf("%w: content type is not FHIR JSON", ErrInvalidResponse)
}

// isFHIRJSON reports whether a Content-Type header value names a JSON media type.
func isFHIRJSON(contentType string) bool {
	switch strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0])) {
	case "application/fhir+json", "application/json", "application/json+fhir":
		return true
	}
	return false
}
